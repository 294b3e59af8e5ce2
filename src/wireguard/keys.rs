//! WireGuard keys: Curve25519 private and public keys in the base64 form `wg` reads and writes.
use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use x25519_dalek::{PublicKey as DalekPublic, StaticSecret};

/// Bytes in a WireGuard key.
pub const KEY_LEN: usize = 32;

/// Why a string is not a WireGuard key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The string is empty.
    #[error("WireGuard key is empty")]
    Empty,
    /// The string is not canonical standard base64.
    #[error("WireGuard key is not valid base64: {0}")]
    NotBase64(String),
    /// The string decodes, but not to 32 bytes.
    #[error("WireGuard key decodes to {0} bytes, want 32 (44 base64 characters ending in '=')")]
    WrongLength(usize),
    /// The string is not 64 hex digits (the userspace API's form).
    #[error("WireGuard key is not 64 hex digits (got {0} characters)")]
    NotHex(usize),
}

/// Lowercase hex, the form of WireGuard's userspace API.
fn to_hex(bytes: &[u8; KEY_LEN]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(s: &str) -> Result<[u8; KEY_LEN], KeyError> {
    if s.is_empty() {
        return Err(KeyError::Empty);
    }
    if s.len() != KEY_LEN * 2 || !s.is_ascii() {
        return Err(KeyError::NotHex(s.len()));
    }
    let mut out = [0u8; KEY_LEN];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| KeyError::NotHex(s.len()))?;
    }
    Ok(out)
}

fn decode(s: &str) -> Result<[u8; KEY_LEN], KeyError> {
    if s.is_empty() {
        return Err(KeyError::Empty);
    }
    // STANDARD refuses non-canonical trailing bits, so a key has exactly one spelling and string
    // comparison of published keys agrees with byte comparison.
    let bytes = STANDARD
        .decode(s)
        .map_err(|e| KeyError::NotBase64(e.to_string()))?;
    let len = bytes.len();
    bytes.try_into().map_err(|_| KeyError::WrongLength(len))
}

/// A node's WireGuard private key. It stays on the node: there is no `Display` or `Serialize`, and
/// `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKey([u8; KEY_LEN]);

impl PrivateKey {
    /// A key from raw bytes, used as given. Any 32 bytes work: X25519 clamps them when deriving the
    /// public key, exactly as the kernel and `wg pubkey` do.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        PrivateKey(bytes)
    }

    /// A new key from 32 random bytes supplied by the caller (the core does no I/O). The bytes are
    /// clamped, so the stored key looks like one from `wg genkey`; the public key is the same either
    /// way.
    pub fn generate(mut random: [u8; KEY_LEN]) -> Self {
        random[0] &= 248;
        random[31] &= 127;
        random[31] |= 64;
        PrivateKey(random)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The base64 form `wg set ... private-key <file>` reads.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// Parses the base64 form written by `wg genkey` (no surrounding whitespace).
    pub fn from_base64(s: &str) -> Result<Self, KeyError> {
        decode(s).map(PrivateKey)
    }

    /// The hex form of WireGuard's userspace API (`private_key=`).
    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }

    /// The matching public key (what `wg pubkey` prints).
    pub fn public_key(&self) -> PublicKey {
        PublicKey(DalekPublic::from(&StaticSecret::from(self.0)).to_bytes())
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

impl FromStr for PrivateKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        PrivateKey::from_base64(s)
    }
}

/// A node's WireGuard public key, as published in `Node.status.wireguardPublicKey`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; KEY_LEN]);

impl PublicKey {
    /// A key from raw bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        PublicKey(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The base64 form Calico publishes.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// Parses the base64 form Calico publishes (no surrounding whitespace).
    pub fn from_base64(s: &str) -> Result<Self, KeyError> {
        decode(s).map(PublicKey)
    }

    /// The hex form of WireGuard's userspace API (`public_key=`).
    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }

    /// Parses the userspace API's hex form.
    pub fn from_hex(s: &str) -> Result<Self, KeyError> {
        from_hex(s).map(PublicKey)
    }

    /// All-zero: what a fresh device reports before it has a key; never a usable peer key.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; KEY_LEN]
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        PublicKey::from_base64(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::is_wireguard_key;

    /// (`wg genkey`, `wg pubkey` of it), captured once with wireguard-tools 1.0.20210914. The last
    /// two private keys are unclamped (all zero, all 0xff), fed to `wg pubkey` as they are.
    const WG_VECTORS: [(&str, &str); 5] = [
        (
            "8P8PBCsQrLKnrX7Im1wqrno4cc75GnKm0UBqfUFLPVA=",
            "Q+U8h6+xbx11Qbxx/qqvGAiztIL/nFoS5zG0SGeB7FY=",
        ),
        (
            "gCScbvSm0FEzNqWLolSWuAdS4vQJjfI1QSU/9vpODUk=",
            "w1MVwZlEEn6Yl1T/VSrTee55GWE7Iy+suBxStmJR5VQ=",
        ),
        (
            "aHPYgmOg8Q8hFo49ML9nMySawsidVBb+iuo2CfrrZFM=",
            "OtQ7XlbgKUT+NyEiV4t04U59v6drgohevo3HW/3aVzc=",
        ),
        (
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "L+V9o0fNYkMVKNqsX7spBzD/9oSvxM/C7ZCZX1jLO3Q=",
        ),
        (
            "//////////////////////////////////////////8=",
            "hHwNLDdSNPNl5mCVUYejc1oPdhPRYJ06ak2MU66qWiI=",
        ),
    ];

    #[test]
    fn public_keys_match_wg_pubkey() {
        for (private, public) in WG_VECTORS {
            let k: PrivateKey = private.parse().unwrap();
            assert_eq!(k.public_key().to_base64(), public, "private key {private}");
            assert_eq!(k.to_base64(), private, "round trip");
            assert!(is_wireguard_key(public) && is_wireguard_key(private));
        }
    }

    #[test]
    fn generate_clamps_without_changing_the_public_key() {
        let raw = [0xffu8; KEY_LEN];
        let g = PrivateKey::generate(raw);
        assert_eq!(g.as_bytes()[0] & 7, 0);
        assert_eq!(g.as_bytes()[31] & 0xc0, 0x40);
        assert_eq!(g.public_key(), PrivateKey::from_bytes(raw).public_key());
        // A `wg genkey` key is already clamped, so generate leaves it alone.
        let wg: PrivateKey = WG_VECTORS[0].0.parse().unwrap();
        assert_eq!(PrivateKey::generate(*wg.as_bytes()), wg);
    }

    #[test]
    fn parse_errors_are_specific() {
        assert_eq!(PublicKey::from_base64(""), Err(KeyError::Empty));
        assert_eq!(
            PublicKey::from_base64("AAAA"),
            Err(KeyError::WrongLength(3))
        );
        let e = PublicKey::from_base64("not a key!").unwrap_err();
        assert!(matches!(e, KeyError::NotBase64(_)), "{e}");
        assert!(
            e.to_string()
                .starts_with("WireGuard key is not valid base64")
        );
        // Non-canonical last character: same bytes as the seed's key, refused like the CRD does.
        assert!(matches!(
            PublicKey::from_base64("Gx7A7Sf27JT3H5S11wciL6PTpGwSloipBGhjzKGTsw1="),
            Err(KeyError::NotBase64(_))
        ));
        // Surrounding whitespace is the caller's business (the key file loader trims it).
        assert!(PublicKey::from_base64(" Gx7A7Sf27JT3H5S11wciL6PTpGwSloipBGhjzKGTsw0=").is_err());
        let seed: PublicKey = "Gx7A7Sf27JT3H5S11wciL6PTpGwSloipBGhjzKGTsw0="
            .parse()
            .unwrap();
        assert_eq!(
            seed.to_string(),
            "Gx7A7Sf27JT3H5S11wciL6PTpGwSloipBGhjzKGTsw0="
        );
        assert!(!seed.is_zero());
        assert!(PublicKey::from_bytes([0; KEY_LEN]).is_zero());
    }

    #[test]
    fn debug_never_prints_a_private_key() {
        let k: PrivateKey = WG_VECTORS[0].0.parse().unwrap();
        let dbg = format!("{k:?}");
        assert!(!dbg.contains(WG_VECTORS[0].0) && dbg.contains("redacted"));
    }
}
