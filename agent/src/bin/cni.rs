//! `ocelot-cni`: the CNI plugin executable the runtime runs. Parsing and rendering live in the
//! core (`ocelot::cni`); this shell reads env + stdin, talks to the agent socket, prints JSON.
use ocelot::cni::{self, CniError, Code, Command};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// Bounded so a hung agent turns into "try again later" rather than a stuck kubelet.
const AGENT_TIMEOUT: Duration = Duration::from_secs(30);

fn main() {
    let mut stdin = Vec::new();
    let mut version = "1.1.0".to_string();
    let outcome = run(&mut stdin, &mut version);
    let (out, code) = match outcome {
        Ok(v) => (v, 0),
        Err(e) => (e.to_json(&version), 1),
    };
    // DEL, CHECK, STATUS and GC print nothing on success.
    if !out.is_null() {
        println!("{out}");
    }
    std::process::exit(code);
}

fn run(stdin: &mut Vec<u8>, version: &mut String) -> Result<serde_json::Value, CniError> {
    let env = cni::parse_env(|k| std::env::var(k).ok())?;
    std::io::stdin()
        .read_to_end(stdin)
        .map_err(|e| CniError::new(Code::Io, "cannot read stdin", e.to_string()))?;
    if env.command == Command::Version {
        // VERSION may get only `{"cniVersion": ...}`; answer with every version we speak.
        return Ok(cni::version_json("1.1.0"));
    }
    let conf = cni::parse_config(stdin, env.command)?;
    *version = conf.cni_version.clone();
    let socket = conf.agent_socket.as_deref().unwrap_or(cni::DEFAULT_SOCKET);
    let not_reachable = |e: std::io::Error| {
        let code = if env.command == Command::Status {
            Code::NotAvailable
        } else {
            Code::TryAgainLater
        };
        CniError::new(code, "agent not reachable", format!("{socket}: {e}"))
    };
    let mut stream = UnixStream::connect(socket).map_err(not_reachable)?;
    stream
        .set_read_timeout(Some(AGENT_TIMEOUT))
        .map_err(not_reachable)?;
    let config = serde_json::from_slice::<serde_json::Value>(stdin).unwrap_or_default();
    let request = serde_json::to_string(&cni::AgentRequest::new(&env, config))
        .map_err(|e| CniError::new(Code::Io, "cannot encode the agent request", e.to_string()))?;
    writeln!(stream, "{request}").map_err(not_reachable)?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(not_reachable)?;
    let reply: serde_json::Value = serde_json::from_str(&line)
        .map_err(|e| CniError::new(Code::TryAgainLater, "agent reply unreadable", e.to_string()))?;
    if let Some(code) = reply.get("code").and_then(|c| c.as_u64()) {
        let msg = reply["msg"].as_str().unwrap_or("agent error").to_string();
        let details = reply["details"].as_str().unwrap_or("").to_string();
        println!(
            "{}",
            serde_json::json!({"cniVersion": version, "code": code, "msg": msg, "details": details})
        );
        std::process::exit(1);
    }
    Ok(reply)
}
