//! Certificates for test clusters: one fresh CA per cluster that issues serving and client certificates
//! (ECDSA P-256, as kubeadm's defaults allow), written as PEM files with mode 0600.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A certificate and its private key, PEM-encoded.
#[derive(Clone, Debug)]
pub struct CertPem {
    pub cert: String,
    pub key: String,
}

impl CertPem {
    /// Writes `<name>.crt` and `<name>.key` into `dir` (created if needed).
    pub fn write(&self, dir: &Path, name: &str) -> Result<()> {
        write_secret(&dir.join(format!("{name}.crt")), &self.cert)?;
        write_secret(&dir.join(format!("{name}.key")), &self.key)
    }
}

/// Writes `pem` to `path` with mode 0600, creating the parent folder.
pub fn write_secret(path: &Path, pem: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    fs::write(path, pem).with_context(|| format!("write {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// A certificate authority.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    key_pem: String,
}

impl Ca {
    pub fn new(common_name: &str) -> Result<Ca> {
        let mut ca = CertificateParams::default();
        ca.distinguished_name.push(DnType::CommonName, common_name);
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate()?;
        let key_pem = key.serialize_pem();
        let issuer = CertifiedIssuer::self_signed(ca, key)?;
        Ok(Ca { issuer, key_pem })
    }

    /// The CA certificate (what clients and servers trust).
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA's private key (kube-controller-manager signs CSRs with it).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Writes `<name>.crt` and `<name>.key` of the CA into `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> Result<()> {
        CertPem {
            cert: self.cert_pem(),
            key: self.key_pem.clone(),
        }
        .write(dir, name)
    }

    /// A serving certificate for `sans` (IP addresses and DNS names; rcgen tells them apart).
    pub fn server(&self, common_name: &str, sans: &[&str]) -> Result<CertPem> {
        let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        p.distinguished_name.push(DnType::CommonName, common_name);
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(p)
    }

    /// A client certificate: Kubernetes reads the user from CN and the groups from O.
    pub fn client(&self, user: &str, groups: &[&str]) -> Result<CertPem> {
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, user);
        for g in groups {
            p.distinguished_name.push(DnType::OrganizationName, *g);
        }
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(p)
    }

    fn sign(&self, p: CertificateParams) -> Result<CertPem> {
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &self.issuer)?;
        Ok(CertPem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }
}

/// A service-account signing key pair (private and public PEM).
pub fn service_account_keys() -> Result<(String, String)> {
    let sa = KeyPair::generate()?;
    Ok((sa.serialize_pem(), sa.public_key_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_pem_certificates() {
        let ca = Ca::new("test-ca").unwrap();
        let server = ca.server("srv", &["127.0.0.1", "localhost"]).unwrap();
        let client = ca.client("system:node:node1", &["system:nodes"]).unwrap();
        for c in [&server, &client] {
            assert!(c.cert.starts_with("-----BEGIN CERTIFICATE-----"));
            assert!(c.key.contains("PRIVATE KEY"));
        }
        assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let dir = tempfile::tempdir().unwrap();
        client.write(dir.path(), "kubelet").unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path().join("kubelet.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
