//! The unix socket the CNI plugin talks to: one JSON request line, one JSON answer line. The
//! socket is root-only (mode 0600 in a 0700 folder): whoever can write to it can give pods
//! addresses.
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use ocelot::cni::{AgentRequest, Code};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};

use crate::agent::{Call, Msg};

/// Longer than the agent's own bounded waits, shorter than the plugin's read timeout.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(28);
/// A request line is small; a bigger one is refused rather than buffered.
const MAX_REQUEST: u64 = 1 << 20;

/// Binds the socket (replacing a stale one) and serves it until the task is aborted.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

pub async fn serve(listener: UnixListener, tx: mpsc::Sender<Msg>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "CNI socket accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            let mut reader = BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_REQUEST));
            if let Err(e) = reader.read_line(&mut line).await {
                tracing::debug!(error = %e, "CNI request unreadable");
                return;
            }
            let answer = match serde_json::from_str::<AgentRequest>(&line) {
                Ok(req) => call(&tx, req).await,
                Err(e) => crate::calls::undecodable(&e),
            };
            let mut out = answer.to_string();
            out.push('\n');
            let _ = write.write_all(out.as_bytes()).await;
        });
    }
}

async fn call(tx: &mpsc::Sender<Msg>, req: AgentRequest) -> Value {
    let (reply, answer) = oneshot::channel();
    let started = Instant::now();
    if tx
        .send(Msg::Cni(Call {
            req,
            reply,
            started,
        }))
        .await
        .is_err()
    {
        return busy("agent is shutting down");
    }
    match tokio::time::timeout(ANSWER_TIMEOUT, answer).await {
        Ok(Ok(v)) => v,
        Ok(Err(_)) => busy("the call was dropped"),
        Err(_) => busy("no answer in time"),
    }
}

fn busy(why: &str) -> Value {
    json!({"code": Code::TryAgainLater as u32, "msg": "try again later", "details": why})
}
