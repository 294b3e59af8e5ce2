//! The node's WireGuard private key file. The key is created here, on the node, and never leaves
//! it: only the public key is reported. Unlike Calico (key only in the kernel device) the key is
//! kept in a file, because a userspace boringtun device dies with its process and the key must
//! survive agent restarts without rotating every peer's configuration.
//!
//! The file holds the base64 key and a newline, the format of `wg genkey`, so that
//! `wg set <dev> private-key <file>` reads it directly.
use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ocelot::wireguard::{KEY_LEN, KeyError, PrivateKey};

/// Where the agent keeps the key unless told otherwise.
pub const DEFAULT_KEY_PATH: &str = "/var/lib/ocelot/wireguard.key";

/// Why the key file cannot be used.
#[derive(Debug)]
pub enum KeyFileError {
    /// The file is readable or writable by group or others.
    Insecure {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The path exists but is not a regular file.
    NotAFile(PathBuf),
    /// The content is not a key.
    Invalid {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        error: KeyError,
    },
    /// Reading, writing or creating failed.
    Io {
        /// What was being done.
        action: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

impl fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyFileError::Insecure { path, mode } => write!(
                f,
                "WireGuard key file {} has mode {mode:04o}, so group or others can access the private key; \
                 refusing to use it: run `chmod 600 {}` (and consider the key leaked: delete the file to get a new one)",
                path.display(),
                path.display()
            ),
            KeyFileError::NotAFile(path) => write!(
                f,
                "WireGuard key file {} is not a regular file",
                path.display()
            ),
            KeyFileError::Invalid { path, error } => write!(
                f,
                "WireGuard key file {} does not hold a key ({error}); delete it to generate a new one",
                path.display()
            ),
            KeyFileError::Io {
                action,
                path,
                source,
            } => write!(f, "{action} {}: {source}", path.display()),
        }
    }
}

impl std::error::Error for KeyFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KeyFileError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The key and whether this call created it (a new key means a new public key to report).
#[derive(Debug)]
pub struct LoadedKey {
    /// The private key.
    pub key: PrivateKey,
    /// True when the file did not exist and was written now.
    pub created: bool,
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> KeyFileError {
    let path = path.to_path_buf();
    move |source| KeyFileError::Io {
        action,
        path,
        source,
    }
}

/// Loads the key at `path`, or creates one there (mode 0600) if there is no file.
pub fn load_or_create(path: &Path) -> Result<LoadedKey, KeyFileError> {
    match File::open(path) {
        Ok(f) => load(path, f).map(|key| LoadedKey {
            key,
            created: false,
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            create(path).map(|key| LoadedKey { key, created: true })
        }
        Err(e) => Err(io_err("opening", path)(e)),
    }
}

fn load(path: &Path, mut f: File) -> Result<PrivateKey, KeyFileError> {
    // Metadata of the opened file, not of the path, so a swap between check and read is harmless.
    let meta = f.metadata().map_err(io_err("inspecting", path))?;
    if !meta.is_file() {
        return Err(KeyFileError::NotAFile(path.to_path_buf()));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Insecure {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut text = String::new();
    f.read_to_string(&mut text)
        .map_err(io_err("reading", path))?;
    PrivateKey::from_base64(text.trim()).map_err(|error| KeyFileError::Invalid {
        path: path.to_path_buf(),
        error,
    })
}

fn create(path: &Path) -> Result<PrivateKey, KeyFileError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err("creating directory", dir))?;

    let mut random = [0u8; KEY_LEN];
    File::open("/dev/urandom")
        .and_then(|mut r| r.read_exact(&mut random))
        .map_err(io_err("reading randomness from", Path::new("/dev/urandom")))?;
    let key = PrivateKey::generate(random);

    // Written under a temporary name with 0600 from the first byte, then renamed: a crash leaves
    // either no key file or a complete one, never a partial or briefly world-readable key.
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "wireguard.key".into());
    let tmp = dir.join(format!(".{file_name}.tmp.{}", std::process::id()));
    // Left over from a crash of an earlier process with the same pid; it is ours to remove.
    let _ = fs::remove_file(&tmp);
    let write = || -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        // The umask can only remove bits; set 0600 exactly so the loader accepts the file.
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        f.write_all(format!("{}\n", key.to_base64()).as_bytes())?;
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("writing", &tmp)(e));
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("renaming into place", path)(e));
    }
    // Make the rename itself durable, so a power loss does not bring back "no key".
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("syncing directory", dir))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_a_0600_key_and_reuses_it_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/wireguard.key");
        let first = load_or_create(&path).unwrap();
        assert!(first.created);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        // The temporary file is gone.
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);

        let second = load_or_create(&path).unwrap();
        assert!(!second.created);
        assert_eq!(second.key, first.key);
        assert_eq!(second.key.public_key(), first.key.public_key());
    }

    #[test]
    fn refuses_a_group_or_world_readable_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wireguard.key");
        load_or_create(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create(&path).unwrap_err();
        assert!(
            matches!(err, KeyFileError::Insecure { mode: 0o644, .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("mode 0644"), "{msg}");
        assert!(
            msg.contains(&format!("chmod 600 {}", path.display())),
            "{msg}"
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(load_or_create(&path).is_ok());
    }

    #[test]
    fn refuses_garbage_instead_of_overwriting_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wireguard.key");
        fs::write(&path, "not a key\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let err = load_or_create(&path).unwrap_err();
        assert!(matches!(err, KeyFileError::Invalid { .. }), "{err:?}");
        assert!(err.to_string().contains("delete it to generate a new one"));
        assert_eq!(fs::read_to_string(&path).unwrap(), "not a key\n");
    }

    #[test]
    fn reads_a_key_written_by_wg_genkey() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wireguard.key");
        let out = Command::new("wg")
            .arg("genkey")
            .output()
            .expect("wireguard-tools' `wg` must be installed");
        fs::write(&path, &out.stdout).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let loaded = load_or_create(&path).unwrap();
        assert!(!loaded.created);
        assert_eq!(
            format!("{}\n", loaded.key.to_base64()).as_bytes(),
            out.stdout
        );
    }

    #[test]
    fn public_key_matches_wg_pubkey_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wireguard.key");
        let loaded = load_or_create(&path).unwrap();
        let out = Command::new("wg")
            .arg("pubkey")
            .stdin(Stdio::from(File::open(&path).unwrap()))
            .output()
            .expect("wireguard-tools' `wg` must be installed");
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8(out.stdout).unwrap().trim(),
            loaded.key.public_key().to_base64()
        );
    }
}
