//! CNI spec 1.1 request parsing and result/error rendering: pure, so the plugin binary stays a
//! thin shell and every bad-input rule is unit-tested here.
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Versions this plugin answers for; spec 1.1 adds STATUS and GC.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.4.0", "1.0.0", "1.1.0"];

/// Spec error codes (CNI spec 1.1, "Error" section).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    IncompatibleVersion = 1,
    UnsupportedField = 2,
    UnknownContainer = 3,
    InvalidEnv = 4,
    Io = 5,
    Decode = 6,
    InvalidConfig = 7,
    TryAgainLater = 11,
    /// STATUS: "the plugin is not available" (cannot serve ADD now).
    NotAvailable = 50,
}

/// A spec error: `code`, `msg` (stable, short) and `details` (names the variable/field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: Code,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: Code, msg: &str, details: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.to_string(),
            details: details.into(),
        }
    }

    /// The JSON the plugin prints on stdout before exiting non-zero.
    pub fn to_json(&self, cni_version: &str) -> Value {
        json!({
            "cniVersion": cni_version,
            "code": self.code as u32,
            "msg": self.msg,
            "details": self.details,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Command {
    fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            "VERSION" => Command::Version,
            _ => return None,
        })
    }
}

/// The CNI_* environment after validation; fields a verb does not need stay empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    pub command: Command,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub pod_namespace: Option<String>,
    pub pod_name: Option<String>,
    pub path: Vec<String>,
}

/// Container IDs the spec allows: alphanumeric first, then alphanumeric, `_`, `.` or `-`.
fn valid_container_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Interface names the kernel accepts: 1..=15 bytes, no `/`, whitespace or `:`, not `.`/`..`.
fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
}

/// Parses the CNI_* variables from a lookup function (the process env in the plugin).
pub fn parse_env(get: impl Fn(&str) -> Option<String>) -> Result<Env, CniError> {
    let raw = get("CNI_COMMAND").ok_or_else(|| {
        CniError::new(
            Code::InvalidEnv,
            "missing CNI_COMMAND",
            "CNI_COMMAND is not set",
        )
    })?;
    let command = Command::parse(&raw).ok_or_else(|| {
        CniError::new(
            Code::InvalidEnv,
            "unknown CNI_COMMAND",
            format!("CNI_COMMAND={raw:?}"),
        )
    })?;
    let need = |var: &str| -> Result<String, CniError> {
        match get(var) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(CniError::new(
                Code::InvalidEnv,
                &format!("missing {var}"),
                format!("{var} is required for {raw}"),
            )),
        }
    };
    let per_attachment = matches!(command, Command::Add | Command::Del | Command::Check);
    let (mut container_id, mut netns, mut ifname) = (String::new(), String::new(), String::new());
    if per_attachment {
        container_id = need("CNI_CONTAINERID")?;
        if !valid_container_id(&container_id) {
            return Err(CniError::new(
                Code::InvalidEnv,
                "invalid CNI_CONTAINERID",
                format!("CNI_CONTAINERID={container_id:?}"),
            ));
        }
        ifname = need("CNI_IFNAME")?;
        if !valid_ifname(&ifname) {
            return Err(CniError::new(
                Code::InvalidEnv,
                "invalid CNI_IFNAME",
                format!("CNI_IFNAME={ifname:?}"),
            ));
        }
        // DEL may come after the netns is gone; the spec makes CNI_NETNS optional there.
        netns = if command == Command::Del {
            get("CNI_NETNS").unwrap_or_default()
        } else {
            need("CNI_NETNS")?
        };
    }
    let (pod_namespace, pod_name) = parse_args(&get("CNI_ARGS").unwrap_or_default())?;
    if command == Command::Add && (pod_namespace.is_none() || pod_name.is_none()) {
        return Err(CniError::new(
            Code::InvalidEnv,
            "missing pod identity in CNI_ARGS",
            "CNI_ARGS needs K8S_POD_NAMESPACE and K8S_POD_NAME",
        ));
    }
    let path = get("CNI_PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    Ok(Env {
        command,
        container_id,
        netns,
        ifname,
        pod_namespace,
        pod_name,
        path,
    })
}

/// `K=V;K=V` CNI_ARGS; unknown keys are ignored as runtimes add their own (IgnoreUnknown etc.).
fn parse_args(raw: &str) -> Result<(Option<String>, Option<String>), CniError> {
    let mut kv = BTreeMap::new();
    for pair in raw.split(';').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            CniError::new(
                Code::InvalidEnv,
                "invalid CNI_ARGS",
                format!("pair {pair:?} has no '='"),
            )
        })?;
        kv.insert(k, v);
    }
    let get = |k: &str| kv.get(k).filter(|v| !v.is_empty()).map(|v| v.to_string());
    Ok((get("K8S_POD_NAMESPACE"), get("K8S_POD_NAME")))
}

/// The network configuration on stdin (only the fields Ocelot reads).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct NetConf {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub name: String,
    #[serde(rename = "type")]
    pub plugin_type: String,
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Agent socket; defaults to [`DEFAULT_SOCKET`].
    #[serde(default, rename = "agentSocket")]
    pub agent_socket: Option<String>,
    #[serde(default, rename = "prevResult")]
    pub prev_result: Option<Value>,
    #[serde(default, rename = "cni.dev/valid-attachments")]
    pub valid_attachments: Option<Vec<Attachment>>,
}

pub const DEFAULT_SOCKET: &str = "/var/run/ocelot/cni.sock";
pub const DEFAULT_MTU: u32 = 1500;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// Parses and validates stdin config for a verb (VERSION needs only `cniVersion`).
pub fn parse_config(stdin: &[u8], command: Command) -> Result<NetConf, CniError> {
    let value: Value = serde_json::from_slice(stdin).map_err(|e| {
        CniError::new(
            Code::Decode,
            "cannot decode network configuration",
            e.to_string(),
        )
    })?;
    let conf: NetConf = serde_json::from_value(value).map_err(|e| {
        CniError::new(
            Code::InvalidConfig,
            "invalid network configuration",
            e.to_string(),
        )
    })?;
    if !SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()) {
        return Err(CniError::new(
            Code::IncompatibleVersion,
            "incompatible CNI version",
            format!(
                "cniVersion {:?} not in {SUPPORTED_VERSIONS:?}",
                conf.cni_version
            ),
        ));
    }
    let v11 = conf.cni_version == "1.1.0";
    if matches!(command, Command::Status | Command::Gc) && !v11 {
        return Err(CniError::new(
            Code::IncompatibleVersion,
            "verb needs cniVersion 1.1.0",
            format!("cniVersion {:?}", conf.cni_version),
        ));
    }
    if conf.name.is_empty() {
        return Err(CniError::new(
            Code::InvalidConfig,
            "invalid network configuration",
            "field name is empty",
        ));
    }
    if matches!(conf.mtu, Some(m) if !(576..=65535).contains(&m)) {
        return Err(CniError::new(
            Code::InvalidConfig,
            "invalid network configuration",
            format!("field mtu {:?} outside 576..=65535", conf.mtu),
        ));
    }
    if command == Command::Check && conf.prev_result.is_none() {
        return Err(CniError::new(
            Code::InvalidConfig,
            "CHECK needs prevResult",
            "field prevResult is missing",
        ));
    }
    Ok(conf)
}

/// VERSION's answer.
pub fn version_json(cni_version: &str) -> Value {
    json!({ "cniVersion": cni_version, "supportedVersions": SUPPORTED_VERSIONS })
}

/// ADD's success result: one host veth, one pod interface in the sandbox, one /32 with the
/// link-local gateway Calico uses.
pub fn add_result(
    cni_version: &str,
    host_veth: &str,
    ifname: &str,
    netns: &str,
    pod_mac: &str,
    ip: std::net::Ipv4Addr,
) -> Value {
    json!({
        "cniVersion": cni_version,
        "interfaces": [
            { "name": host_veth, "mac": "ee:ee:ee:ee:ee:ee" },
            { "name": ifname, "mac": pod_mac, "sandbox": netns },
        ],
        "ips": [ { "address": format!("{ip}/32"), "gateway": "169.254.1.1", "interface": 1 } ],
        "routes": [ { "dst": "0.0.0.0/0", "gw": "169.254.1.1" } ],
        "dns": {},
    })
}

/// What the plugin sends the agent: one JSON line per call, answered by one line holding the
/// verb's result (`null` for verbs whose success prints nothing) or a spec error
/// (`code`, `msg`, `details`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentRequest {
    pub command: Command,
    #[serde(rename = "containerID", default)]
    pub container_id: String,
    #[serde(default)]
    pub netns: String,
    #[serde(default)]
    pub ifname: String,
    #[serde(default)]
    pub pod_namespace: Option<String>,
    #[serde(default)]
    pub pod_name: Option<String>,
    /// The network configuration as the runtime gave it.
    pub config: Value,
}

impl AgentRequest {
    /// The request for a validated environment and configuration.
    pub fn new(env: &Env, config: Value) -> AgentRequest {
        AgentRequest {
            command: env.command,
            container_id: env.container_id.clone(),
            netns: env.netns.clone(),
            ifname: env.ifname.clone(),
            pod_namespace: env.pod_namespace.clone(),
            pod_name: env.pod_name.clone(),
            config,
        }
    }
}

/// Plugin-specific error codes (the spec leaves 100 and above to plugins).
pub mod codes {
    /// The container ID already has an address, for another pod.
    pub const CONTAINER_IN_USE: u32 = 100;
    /// No address could be assigned (pool exhausted, no block claimed in time).
    pub const NO_ADDRESS: u32 = 101;
    /// The pod is not known to the API server.
    pub const POD_NOT_FOUND: u32 = 102;
    /// The kernel refused a step of the pod's interfaces.
    pub const DATAPLANE: u32 = 103;
    /// The pod's or namespace's pool annotations cannot be honoured.
    pub const POOL_SELECTION: u32 = 104;
    /// CHECK found the attachment not as ADD left it.
    pub const CHECK_FAILED: u32 = 105;
}

/// An error reply with a plugin-specific code.
pub fn error_reply(code: u32, msg: &str, details: impl Into<String>) -> Value {
    json!({ "code": code, "msg": msg, "details": details.into() })
}

/// The IPAM handle Calico uses for a pod's addresses.
pub fn handle_id(container_id: &str) -> String {
    format!("k8s-pod-network.{container_id}")
}

#[cfg(test)]
mod tests;
