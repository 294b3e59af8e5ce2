//! Container images built locally (no registry is reachable): single-layer OCI archives that
//! `ctr images import` loads, made from files of the host's Debian packages.
//!
//! - [`PAUSE_IMAGE`]: Debian's static `catatonit` in pause mode, the pod sandbox;
//! - [`TOOLS_IMAGE`]: Debian's static busybox with every applet linked (`sh`, `ip`, `nc`, `ping`, …);
//! - [`NGINX_IMAGE`]: Debian's nginx binary with the shared libraries it links (found by `ldd`), a config
//!   that logs to stdout and answers `/hostname` with the pod's name, plus the tools image's busybox.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use ring::digest::{SHA256, digest};
use serde_json::json;

use crate::proc::run_bounded;

pub const PAUSE_IMAGE: &str = "registry.k8s.io/pause:ocelot-lab";
pub const TOOLS_IMAGE: &str = "docker.io/ocelot/tools:lab";
pub const NGINX_IMAGE: &str = "docker.io/library/nginx:ocelot-lab";

/// Host files the images are made of (installed by scripts/setup.sh).
pub const CATATONIT: &str = "/usr/bin/catatonit";
pub const BUSYBOX: &str = "/bin/busybox";
/// Where scripts/setup.sh unpacks Debian's nginx package (not installed: its service would start).
pub fn nginx_root() -> PathBuf {
    crate::cluster::cache_dir().join("nginx-root")
}

/// A content-addressed blob: digest (`sha256:…`) and bytes.
type Blob = (String, Vec<u8>);

/// One entry of an image's only layer.
#[derive(Clone, Debug)]
enum Entry {
    Dir,
    File { data: Vec<u8>, mode: u32 },
    Symlink(String),
}

/// An image being put together: its files and its config.
#[derive(Debug)]
pub struct ImageBuilder {
    name: String,
    entries: BTreeMap<String, Entry>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    env: Vec<String>,
}

impl ImageBuilder {
    /// `name` is the full reference pods use (`docker.io/library/nginx:ocelot-lab`).
    pub fn new(name: &str) -> ImageBuilder {
        ImageBuilder {
            name: name.to_string(),
            entries: BTreeMap::new(),
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
        }
    }

    fn parents(&mut self, path: &str) {
        let mut p = String::new();
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            p = format!("{p}/{part}");
            self.entries.entry(p.clone()).or_insert(Entry::Dir);
        }
    }

    /// The same files and config under another reference (to extend a base image).
    pub fn with_name(mut self, name: &str) -> ImageBuilder {
        self.name = name.to_string();
        self
    }

    /// The image reference.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn dir(&mut self, path: &str) -> &mut Self {
        self.parents(path);
        self.entries.insert(path.to_string(), Entry::Dir);
        self
    }

    pub fn bytes(&mut self, path: &str, data: impl Into<Vec<u8>>, mode: u32) -> &mut Self {
        self.parents(path);
        let data = data.into();
        self.entries
            .insert(path.to_string(), Entry::File { data, mode });
        self
    }

    /// Copies host file `src` (following symlinks) to `path`.
    pub fn file(&mut self, path: &str, src: &Path, mode: u32) -> Result<&mut Self> {
        let data = std::fs::read(src).with_context(|| format!("reading {}", src.display()))?;
        Ok(self.bytes(path, data, mode))
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.parents(path);
        self.entries
            .insert(path.to_string(), Entry::Symlink(target.to_string()));
        self
    }

    pub fn entrypoint(&mut self, args: &[&str]) -> &mut Self {
        self.entrypoint = args.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn cmd(&mut self, args: &[&str]) -> &mut Self {
        self.cmd = args.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Adds static busybox at /bin/busybox with a symlink per applet (in the folder busybox names).
    pub fn busybox(&mut self) -> Result<&mut Self> {
        self.file("/bin/busybox", Path::new(BUSYBOX), 0o755)?;
        let out = run_bounded(
            Command::new(BUSYBOX).arg("--list-full"),
            None,
            Duration::from_secs(10),
        )?;
        ensure!(out.status.success(), "{BUSYBOX} --list-full failed");
        for applet in String::from_utf8_lossy(&out.stdout).lines() {
            let path = format!("/{}", applet.trim());
            if path != "/bin/busybox" && !self.entries.contains_key(&path) {
                self.symlink(&path, "/bin/busybox");
            }
        }
        self.dir("/tmp");
        Ok(self)
    }

    fn layer(&self) -> Result<Vec<u8>> {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, entry) in &self.entries {
            let rel = path.trim_start_matches('/');
            let mut h = tar::Header::new_ustar();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            match entry {
                Entry::Dir => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(if rel == "tmp" { 0o1777 } else { 0o755 });
                    h.set_size(0);
                    tar.append_data(&mut h, format!("{rel}/"), std::io::empty())?;
                }
                Entry::File { data, mode } => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(*mode);
                    h.set_size(data.len() as u64);
                    tar.append_data(&mut h, rel, data.as_slice())?;
                }
                Entry::Symlink(target) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_mode(0o777);
                    h.set_size(0);
                    tar.append_link(&mut h, rel, target)?;
                }
            }
        }
        Ok(tar.into_inner()?)
    }

    /// Writes the image as an OCI image-layout tar archive (what `ctr images import` reads), with the
    /// image name in the `io.containerd.image.name` annotation.
    pub fn write_oci_archive(&self, out: &Path) -> Result<()> {
        write_oci_archive(&[self], out)
    }

    /// The blobs (layer, config, manifest) and the index entry of this image.
    fn blobs(&self) -> Result<(Vec<Blob>, serde_json::Value)> {
        let layer = self.layer()?;
        let layer_digest = sha256(&layer);
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Entrypoint": self.entrypoint,
                "Cmd": self.cmd,
                "Env": self.env,
                "WorkingDir": "/",
            },
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }))?;
        let config_digest = sha256(&config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config.len(),
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer_digest,
                "size": layer.len(),
            }],
        }))?;
        let manifest_digest = sha256(&manifest);
        let tag = self
            .name
            .rsplit_once(':')
            .map(|(_, t)| t)
            .unwrap_or("latest");
        let entry = json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {
                "io.containerd.image.name": self.name,
                "org.opencontainers.image.ref.name": tag,
            },
        });
        Ok((
            vec![
                (layer_digest, layer),
                (config_digest, config),
                (manifest_digest, manifest),
            ],
            entry,
        ))
    }
}

/// Writes several images into one OCI image-layout tar archive: one `ctr images import` loads them all
/// (one ctr start per node instead of one per image).
pub fn write_oci_archive(images: &[&ImageBuilder], out: &Path) -> Result<()> {
    let mut blobs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut manifests = Vec::new();
    for image in images {
        let (b, entry) = image
            .blobs()
            .with_context(|| format!("image {}", image.name))?;
        blobs.extend(b);
        manifests.push(entry);
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))?;
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        tar.append_data(&mut h, name, data)?;
        Ok(())
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    add("index.json", &index)?;
    for (d, data) in &blobs {
        add(&format!("blobs/sha256/{}", &d["sha256:".len()..]), data)?;
    }
    let bytes = tar.into_inner()?;
    std::fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

fn sha256(data: &[u8]) -> String {
    let d = digest(&SHA256, data);
    let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Shared libraries (and the ELF interpreter) that `binary` loads, as `ldd` resolves them on this host.
pub(crate) fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = run_bounded(
        Command::new("ldd").arg(binary),
        None,
        Duration::from_secs(10),
    )
    .context("running ldd")?;
    ensure!(
        out.status.success(),
        "ldd {} failed: {}",
        binary.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut libs = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if line.contains("not found") {
            bail!(
                "{}: a library is missing on this host: {line}",
                binary.display()
            );
        }
        // "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/')),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    Ok(libs)
}

/// The sandbox image.
pub fn pause() -> Result<ImageBuilder> {
    let mut b = ImageBuilder::new(PAUSE_IMAGE);
    // catatonit -P: stays as PID 1 doing nothing but reaping, until signalled: what pause does.
    b.file("/pause", Path::new(CATATONIT), 0o755)?
        .entrypoint(&["/pause", "-P"]);
    Ok(b)
}

/// The shell/tools image.
pub fn tools() -> Result<ImageBuilder> {
    let mut b = ImageBuilder::new(TOOLS_IMAGE);
    b.busybox()?.cmd(&["sh"]);
    Ok(b)
}

const NGINX_CONF: &str = r#"user nobody nogroup;
worker_processes 1;
daemon off;
pid /run/nginx.pid;
error_log stderr notice;
events { worker_connections 64; }
http {
    default_type text/html;
    access_log /dev/stdout;
    server {
        listen 80;
        root /usr/share/nginx/html;
        location = /hostname { default_type text/plain; return 200 "$hostname\n"; }
    }
}
"#;

/// The HTTP server image (the seed's nginx step).
pub fn nginx() -> Result<ImageBuilder> {
    let root = nginx_root();
    let bin = root.join("usr/sbin/nginx");
    ensure!(
        bin.is_file(),
        "{} missing: run scripts/setup.sh (it unpacks Debian's nginx package there)",
        bin.display()
    );
    let mut b = ImageBuilder::new(NGINX_IMAGE);
    b.busybox()?;
    b.file("/usr/sbin/nginx", &bin, 0o755)?;
    for lib in shared_libraries(&bin)? {
        b.file(&lib.to_string_lossy(), &lib, 0o755)?;
    }
    b.bytes("/etc/nginx/nginx.conf", NGINX_CONF, 0o644)
        .bytes(
            "/etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
            0o644,
        )
        .bytes("/etc/group", "root:x:0:\nnogroup:x:65534:\n", 0o644)
        .bytes(
            "/usr/share/nginx/html/index.html",
            "<h1>Welcome to nginx!</h1>\n",
            0o644,
        )
        .dir("/var/log/nginx")
        .dir("/var/lib/nginx")
        .dir("/run")
        .dir("/root")
        .entrypoint(&["/usr/sbin/nginx"])
        .cmd(&[]);
    Ok(b)
}

/// Writes the three images into one archive in `dir`, returning it.
pub fn write_all(dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("lab-images.tar");
    write_oci_archive(&[&pause()?, &tools()?, &nginx()?], &path)?;
    Ok(vec![path])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_layout_has_index_and_blobs() {
        let mut b = ImageBuilder::new("example.org/x:1");
        b.bytes("/etc/hello", "hi", 0o644)
            .symlink("/bin/sh", "/bin/busybox");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.tar");
        b.write_oci_archive(&path).unwrap();
        let mut ar = tar::Archive::new(std::fs::File::open(&path).unwrap());
        let mut names = Vec::new();
        let mut index = String::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            if name == "index.json" {
                std::io::Read::read_to_string(&mut e, &mut index).unwrap();
            }
            names.push(name);
        }
        assert_eq!(
            names
                .iter()
                .filter(|n| n.starts_with("blobs/sha256/"))
                .count(),
            3
        );
        assert!(names.contains(&"oci-layout".to_string()));
        assert!(
            index.contains(r#""io.containerd.image.name":"example.org/x:1""#),
            "{index}"
        );
    }

    #[test]
    fn parents_are_added_once() {
        let mut b = ImageBuilder::new("x:1");
        b.bytes("/a/b/c", "x", 0o644).bytes("/a/b/d", "y", 0o644);
        let dirs: Vec<&String> = b
            .entries
            .iter()
            .filter(|(_, e)| matches!(e, Entry::Dir))
            .map(|(p, _)| p)
            .collect();
        assert_eq!(dirs, vec!["/a", "/a/b"]);
    }
}
