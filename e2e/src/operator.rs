//! Running `ocelot-operator` in tests against the shared test cluster (as a [`Daemon`]), and the
//! API helpers operator tests share: objects as JSON, fixtures, the API server's write counters.
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::cluster::{self, check, kubectl, kubectl_stdin};

pub use crate::daemon::WAIT;
use crate::daemon::{Daemon, sibling_binary};

pub fn operator_binary() -> PathBuf {
    sibling_binary("ocelot-operator")
}

/// The seed's default pool from the flag and nodes on the seed's /20 fabric.
pub const SEED_ARGS: [&str; 4] = [
    "--default-ipv4-pool-cidr",
    "198.19.16.0/21",
    "--node-prefix-length",
    "20",
];

/// A running `ocelot-operator` against the shared test cluster (a [`Daemon`]).
pub struct Operator;

impl Operator {
    pub fn start(log: &Path) -> Daemon {
        Operator::start_with(log, &[])
    }

    /// Starts the operator with extra command-line arguments.
    pub fn start_with(log: &Path, args: &[&str]) -> Daemon {
        let kubeconfig = cluster::kubeconfig_path().display().to_string();
        let mut all = vec!["--kubeconfig", kubeconfig.as_str()];
        all.extend_from_slice(args);
        Daemon::start(&operator_binary(), &all, log)
    }
}

pub fn get_json(kind: &str, name: &str) -> Result<Value, String> {
    // managedFields are hidden by default; the snapshot checks who wrote each object.
    let out = kubectl(["get", kind, name, "-o", "json", "--show-managed-fields"]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("{kind}/{name}: bad JSON: {e}"))
}

pub fn apply(yaml: &str) {
    check(kubectl_stdin(["apply", "-f", "-"], yaml), "kubectl apply");
}

pub fn fixture(name: &str) -> String {
    let p = cluster::repo_root().join("tests/fixtures/valid").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn op_log_line(log: &Path, needle: &str) -> Result<String, String> {
    crate::daemon::log_line(log, needle)
}

/// Mutating requests the API server has served, from its own metrics (leases excluded: the API
/// server and the election renew theirs).
pub fn api_writes() -> u64 {
    api_writes_except(&[])
}

/// [`api_writes`] without the writes to these resources (e.g. `events`).
pub fn api_writes_except(resources: &[&str]) -> u64 {
    write_lines(resources)
        .iter()
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The API server's `apiserver_request_total` lines of mutating verbs, as [`api_writes_except`]
/// counts them; compare two scrapes to see which writes happened in between.
pub fn write_lines(resources: &[&str]) -> Vec<String> {
    let out = kubectl(["get", "--raw", "/metrics"]);
    assert!(out.status.success(), "scrape API server metrics");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
        .filter(|l| {
            // Server-side apply is counted as verb APPLY, not PATCH.
            ["POST", "PUT", "PATCH", "APPLY", "DELETE"]
                .iter()
                .any(|v| l.contains(&format!("verb=\"{v}\"")))
        })
        .filter(|l| !l.contains("resource=\"leases\""))
        .filter(|l| {
            !resources
                .iter()
                .any(|r| l.contains(&format!("resource=\"{r}\"")))
        })
        .map(str::to_string)
        .collect()
}

/// Applies the seed's patch switching WireGuard on in FelixConfiguration `default`.
pub fn patch_seed_wireguard_on() {
    let patch = fixture("felixconfiguration-default.wireguard-on.patch.json");
    check(
        kubectl([
            "patch",
            "felixconfiguration",
            "default",
            "--type=merge",
            "-p",
            patch.trim(),
        ]),
        "kubectl patch felixconfiguration default (WireGuard on)",
    );
}

/// A merge patch of the spec of IPPool `default-ipv4-ippool` (e.g. `{"natOutgoing":false}`).
pub fn patch_default_pool(spec: &str) {
    check(
        kubectl([
            "patch",
            "ippools.projectcalico.org",
            "default-ipv4-ippool",
            "--type=merge",
            "-p",
            &format!(r#"{{"spec":{spec}}}"#),
        ]),
        &format!("kubectl patch ippool default-ipv4-ippool {spec}"),
    );
}

/// A Kubernetes Node `name` with `ip` as its InternalIP, as a kubelet registers it.
pub fn register_node(name: &str, ip: &str) {
    apply(&format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels:\n    kubernetes.io/hostname: {name}\n"
    ));
    let patch = serde_json::json!({"status": {"addresses": [
        {"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]}});
    check(
        kubectl([
            "patch",
            "node",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch.to_string(),
        ]),
        &format!("patch node/{name} status"),
    );
}

/// A namespace with its `default` ServiceAccount (the test cluster has no controller to make it,
/// and Pod admission needs it).
pub fn namespace(name: &str) {
    apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: default\n  namespace: {name}\n"
    ));
}

/// A bare Pod bound to `node` (no scheduler runs), with `annotations` as `key: value` YAML lines.
pub fn pod(namespace: &str, name: &str, node: &str, annotations: &[(&str, &str)]) {
    let ann: String = annotations
        .iter()
        .map(|(k, v)| format!("    {k}: '{v}'\n"))
        .collect();
    let ann = if ann.is_empty() {
        String::new()
    } else {
        format!("  annotations:\n{ann}")
    };
    apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {namespace}\n{ann}spec:\n  nodeName: {node}\n  containers:\n  - name: c\n    image: busybox\n"
    ));
}
