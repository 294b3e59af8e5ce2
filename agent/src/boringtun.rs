//! The WireGuard device in userspace: `boringtun-cli` runs in the node's network namespace and
//! in a private mount namespace with its own tmpfs on `/run/wireguard`, because its control
//! socket path (`/var/run/wireguard/<interface>.sock`) is global, not per network namespace
//! (feasibility.md §3). The agent reaches that socket through `/proc/<pid>/root`, so it never
//! enters the mount namespace itself.
//!
//! boringtun is a process of its own: it keeps running across agent restarts (the tunnel, and
//! pod traffic through it, stays up), and a restarted agent finds it again by its pid file, after
//! checking that the pid is a boringtun for this interface in the node's network namespace.
use std::ffi::CString;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::netns::NodeNetns;

/// Bound of one control-socket exchange.
const UAPI_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a started boringtun has to open its socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long boringtun has to exit on SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Where boringtun puts its control sockets (it hard-codes /var/run/wireguard; /var/run is /run).
const SOCK_DIR: &str = "/run/wireguard";

/// Where the device's files live and which program runs it.
#[derive(Clone, Debug)]
pub struct Userspace {
    pub program: PathBuf,
    pub pid_file: PathBuf,
    pub log: PathBuf,
    pub netns: NodeNetns,
}

/// A running boringtun for one interface.
#[derive(Debug)]
pub struct Device {
    pub pid: u32,
    pub interface: String,
    child: Option<tokio::process::Child>,
}

fn inode(path: &Path) -> io::Result<(u64, u64)> {
    std::fs::metadata(path).map(|m| (m.dev(), m.ino()))
}

impl Userspace {
    /// The files in the agent's state folder.
    pub fn in_dir(dir: &Path, program: PathBuf, netns: NodeNetns) -> Userspace {
        Userspace {
            program,
            pid_file: dir.join("boringtun.pid"),
            log: dir.join("boringtun.log"),
            netns,
        }
    }

    fn netns_file(&self) -> PathBuf {
        self.netns
            .path()
            .map_or_else(|| PathBuf::from("/proc/self/ns/net"), Path::to_path_buf)
    }

    /// Whether `pid` is a boringtun for `interface` in the node's network namespace.
    fn is_ours(&self, pid: u32, interface: &str) -> bool {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let named = args.first().is_some_and(|a| {
            Path::new(std::str::from_utf8(a).unwrap_or_default())
                .file_name()
                .is_some_and(|f| f.to_string_lossy().starts_with("boringtun"))
        });
        let same_ns = match (
            inode(Path::new(&format!("/proc/{pid}/ns/net"))),
            inode(&self.netns_file()),
        ) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        named && same_ns && args.contains(&interface.as_bytes())
    }

    /// The boringtun serving `interface`, from the last known one, else the pid file.
    pub fn find(&self, last: Option<Device>, interface: &str) -> Option<Device> {
        if let Some(mut d) = last {
            let exited = d
                .child
                .as_mut()
                .is_some_and(|c| !matches!(c.try_wait(), Ok(None)));
            if !exited && d.interface == interface && self.is_ours(d.pid, interface) {
                return Some(d);
            }
        }
        let pid: u32 = std::fs::read_to_string(&self.pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        self.is_ours(pid, interface).then(|| Device {
            pid,
            interface: interface.to_string(),
            child: None,
        })
    }

    /// Starts boringtun for `interface` and waits for its control socket.
    pub async fn start(&self, interface: &str) -> Result<Device, String> {
        std::fs::create_dir_all(SOCK_DIR).map_err(|e| format!("mkdir {SOCK_DIR}: {e}"))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("open {}: {e}", self.log.display()))?;
        let mut cmd = self
            .netns
            .command(&self.program)
            .map_err(|e| format!("enter the node's namespace: {e}"))?;
        cmd.args([interface, "--foreground", "--disable-drop-privileges"])
            .args(["--verbosity", "info"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        let (root, dir, tmpfs) = (
            CString::new("/").expect("no NUL"),
            CString::new(SOCK_DIR).expect("no NUL"),
            CString::new("tmpfs").expect("no NUL"),
        );
        // SAFETY: between fork and exec only async-signal-safe syscalls run (setsid, unshare,
        // mount) on C strings made before the fork.
        unsafe {
            cmd.pre_exec(move || {
                // Its own session: signals to the agent's group do not reach the tunnel.
                libc::setsid();
                if libc::unshare(libc::CLONE_NEWNS) != 0 {
                    return Err(io::Error::last_os_error());
                }
                let flags = libc::MS_REC | libc::MS_PRIVATE;
                if libc::mount(
                    std::ptr::null(),
                    root.as_ptr(),
                    std::ptr::null(),
                    flags,
                    std::ptr::null(),
                ) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                if libc::mount(
                    tmpfs.as_ptr(),
                    dir.as_ptr(),
                    tmpfs.as_ptr(),
                    0,
                    std::ptr::null(),
                ) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = tokio::process::Command::from(cmd)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.program.display()))?;
        let pid = child.id().ok_or("boringtun exited at once")?;
        std::fs::write(&self.pid_file, format!("{pid}\n"))
            .map_err(|e| format!("write {}: {e}", self.pid_file.display()))?;
        let mut dev = Device {
            pid,
            interface: interface.to_string(),
            child: Some(child),
        };
        let sock = dev.socket();
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        while !sock.exists() {
            if let Some(c) = dev.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                return Err(format!(
                    "boringtun exited ({status}) before opening its socket; see {}",
                    self.log.display()
                ));
            }
            if tokio::time::Instant::now() > deadline {
                self.stop(dev).await;
                return Err(format!(
                    "boringtun did not open {} within {START_TIMEOUT:?}; see {}",
                    sock.display(),
                    self.log.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!(pid, interface, "boringtun started");
        Ok(dev)
    }

    /// SIGTERM (boringtun removes its device and socket), then SIGKILL after a bound.
    pub async fn stop(&self, mut dev: Device) {
        // SAFETY: kill(2) on a pid checked to be our boringtun.
        unsafe { libc::kill(dev.pid as i32, libc::SIGTERM) };
        let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
        loop {
            let gone = match dev.child.as_mut() {
                Some(c) => !matches!(c.try_wait(), Ok(None)),
                None => {
                    !Path::new(&format!("/proc/{}", dev.pid)).exists()
                        || !self.is_ours(dev.pid, &dev.interface)
                }
            };
            if gone {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                // SAFETY: as above.
                unsafe { libc::kill(dev.pid as i32, libc::SIGKILL) };
                if let Some(c) = dev.child.as_mut() {
                    let _ = c.wait().await;
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = std::fs::remove_file(&self.pid_file);
        tracing::info!(pid = dev.pid, interface = %dev.interface, "boringtun stopped");
    }
}

impl Device {
    /// The control socket, seen through the process's own root (its mount namespace).
    pub fn socket(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/root{SOCK_DIR}/{}.sock",
            self.pid, self.interface
        ))
    }

    /// One request on the control socket; the reply up to the blank line after `errno=`.
    pub async fn uapi(&self, request: &str) -> Result<String, String> {
        let path = self.socket();
        let exchange = async {
            let mut s = tokio::net::UnixStream::connect(&path)
                .await
                .map_err(|e| format!("connect {}: {e}", path.display()))?;
            s.write_all(request.as_bytes())
                .await
                .map_err(|e| format!("write {}: {e}", path.display()))?;
            let mut reply = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = s
                    .read(&mut buf)
                    .await
                    .map_err(|e| format!("read {}: {e}", path.display()))?;
                reply.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&reply);
                if n == 0 || (text.contains("errno=") && text.ends_with("\n\n")) {
                    return Ok(text.into_owned());
                }
            }
        };
        tokio::time::timeout(UAPI_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("{} did not answer within {UAPI_TIMEOUT:?}", path.display()))?
    }
}
