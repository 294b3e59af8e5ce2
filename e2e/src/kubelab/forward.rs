//! A TCP forwarder from the host's loopback into a lab netns: how host-side clients (a `kube::Client` in a
//! test, kubectl on the host) reach the kube lab's API server, which listens only inside the control node.
//! Listens on 127.0.0.1 (a free port); each connection is dialled from a thread that joined the target
//! netns (a socket belongs to the netns of the thread that creates it).

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};

type Dial = mpsc::Sender<mpsc::Sender<io::Result<TcpStream>>>;

/// A running forwarder; stops (closing its listener; open connections end with their peers) on drop.
#[derive(Debug)]
pub struct Forwarder {
    local: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Forwarder {
    /// Forwards `127.0.0.1:<free port>` on the host to `target` inside the netns at `netns_path`.
    pub fn start(netns_path: &Path, target: SocketAddr) -> Result<Forwarder> {
        let ns = std::fs::File::open(netns_path)
            .with_context(|| format!("opening {}", netns_path.display()))?;
        let (dial_tx, dial_rx) = mpsc::channel::<mpsc::Sender<io::Result<TcpStream>>>();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<io::Result<()>>(1);
        thread::Builder::new()
            .name("kubelab-dialer".into())
            .spawn(move || {
                // SAFETY: setns on this thread only, with a valid netns fd.
                let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                let _ = ready_tx.send(if r == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                });
                if r != 0 {
                    return;
                }
                for reply in dial_rx {
                    let _ =
                        reply.send(TcpStream::connect_timeout(&target, Duration::from_secs(10)));
                }
            })?;
        ready_rx
            .recv()
            .map_err(|_| anyhow!("dialer thread died"))?
            .context("joining the netns")?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let local = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        thread::Builder::new()
            .name("kubelab-forward".into())
            .spawn(move || accept_loop(listener, dial_tx, stopped))?;
        Ok(Forwarder { local, stop })
    }

    /// The host-side address (127.0.0.1:port).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

fn accept_loop(listener: TcpListener, dial: Dial, stop: Arc<AtomicBool>) {
    for conn in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let Ok(client) = conn else { continue };
        let (tx, rx) = mpsc::channel();
        if dial.send(tx).is_err() {
            return;
        }
        let Ok(Ok(server)) = rx.recv() else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        pipe(client, server);
    }
}

/// Copies both ways until either side closes.
fn pipe(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let one = move |mut from: TcpStream, mut to: TcpStream| {
        let _ = io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Write);
        let _ = from.shutdown(Shutdown::Read);
    };
    thread::spawn(move || one(a, b2));
    thread::spawn(move || one(b, a2));
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag and closes the listener.
        let _ = TcpStream::connect_timeout(&self.local, Duration::from_secs(1));
    }
}
