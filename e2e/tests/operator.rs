//! `ocelot-operator` against the real kube-apiserver: the seed's objects become each node's
//! NodeNetworkState spec, the seed's WireGuard patch reaches every node, a restart with nothing
//! changed writes nothing, a node deleted while the operator was down loses its state, and no user
//! object is ever written.
//!
//! The operator binary is taken from the test binary's target dir (`target/<profile>/ocelot-operator`):
//! `cargo test --workspace` builds it; for this test alone run `cargo build -p ocelot-operator` first.
//! Object names are the seed's; this test binary has its own API server, so nothing else writes them.
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use ocelot_e2e::cluster::{self, check, kubectl, kubectl_stdin};
use serde_json::Value;

/// Bound of every wait for the operator (a loaded 2-core CI machine).
const WAIT: Duration = Duration::from_secs(90);
const NODES: [(&str, &str, &str); 3] = [
    ("control", "198.19.0.1/20", "198.19.21.0/26"),
    ("node1", "198.19.0.2/20", "198.19.22.128/26"),
    ("node2", "198.19.0.3/20", "198.19.21.64/26"),
];

fn operator_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/operator-<hash> → target/<profile>/ocelot-operator
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("ocelot-operator"))
        .expect("test binary lives in target/<profile>/deps");
    assert!(
        bin.is_file(),
        "{} not found: build it first with `cargo build -p ocelot-operator` (`cargo test --workspace` does)",
        bin.display()
    );
    bin
}

/// A running operator; killed when dropped (also when a test panics).
struct Operator {
    child: Child,
    log: PathBuf,
}

impl Operator {
    fn start(log: &Path) -> Operator {
        let out = File::create(log).expect("create operator log");
        let mut cmd = Command::new(operator_binary());
        cmd.arg("--kubeconfig")
            .arg(cluster::kubeconfig_path())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        // SAFETY: prctl is async-signal-safe. The operator dies with this test's thread even on abort.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                );
                Ok(())
            })
        };
        let child = cmd.spawn().expect("start ocelot-operator");
        Operator {
            child,
            log: log.to_path_buf(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `f` until it returns Ok, or panics naming `what`, the last answer and the operator log.
    fn wait<T>(&mut self, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "ocelot-operator exited ({status}) while waiting for {what}; log:\n{}",
                    self.log()
                );
            }
            let last = match f() {
                Ok(v) => return v,
                Err(e) => e,
            };
            if start.elapsed() > WAIT {
                panic!(
                    "timed out after {WAIT:?} waiting for {what}; last: {last}\noperator log:\n{}",
                    self.log()
                );
            }
            sleep(Duration::from_millis(250));
        }
    }

    /// SIGTERM, and the operator must exit cleanly on its own.
    fn stop(mut self) -> String {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait for operator") {
                break s;
            }
            assert!(
                start.elapsed() < WAIT,
                "ocelot-operator did not exit within {WAIT:?} of SIGTERM; log:\n{}",
                self.log()
            );
            sleep(Duration::from_millis(100));
        };
        let log = self.log();
        assert!(
            status.success(),
            "operator exit {status} on SIGTERM; log:\n{log}"
        );
        assert!(log.contains("SIGTERM: shutting down"), "{log}");
        log
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn get_json(kind: &str, name: &str) -> Result<Value, String> {
    // managedFields are hidden by default; the snapshot checks who wrote each object.
    let out = kubectl(["get", kind, name, "-o", "json", "--show-managed-fields"]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("{kind}/{name}: bad JSON: {e}"))
}

fn apply(yaml: &str) {
    check(kubectl_stdin(["apply", "-f", "-"], yaml), "kubectl apply");
}

fn fixture(name: &str) -> String {
    let p = cluster::repo_root().join("tests/fixtures/valid").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The user objects of the scenario (kind, name).
fn user_objects() -> Vec<(&'static str, String)> {
    let mut v = vec![
        (
            "ippools.projectcalico.org",
            "default-ipv4-ippool".to_string(),
        ),
        ("ippools.projectcalico.org", "external-pool".to_string()),
        (
            "bgppeers.projectcalico.org",
            "bgppeer-global-host1".to_string(),
        ),
        (
            "felixconfigurations.projectcalico.org",
            "default".to_string(),
        ),
    ];
    for (node, _, block) in NODES {
        v.push(("nodes.projectcalico.org", node.to_string()));
        v.push((
            "blockaffinities.projectcalico.org",
            affinity_name(node, block),
        ));
    }
    v
}

fn affinity_name(node: &str, block: &str) -> String {
    format!("{node}-{}", block.replace(['.', '/'], "-"))
}

/// What the operator must never change in a user object; managedFields must not name it.
fn snapshot() -> Vec<Value> {
    user_objects()
        .into_iter()
        .map(|(kind, name)| {
            let o = get_json(kind, &name).unwrap_or_else(|e| panic!("{kind}/{name}: {e}"));
            let managers: Vec<&Value> = o["metadata"]["managedFields"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| &f["manager"])
                .collect();
            // Non-empty: proves managedFields were fetched, so the next check means something.
            assert!(!managers.is_empty(), "{kind}/{name}: no managedFields");
            assert!(
                !managers.iter().any(|m| *m == "ocelot-operator"),
                "{kind}/{name} was written by ocelot-operator: managers {managers:?}"
            );
            let m = &o["metadata"];
            serde_json::json!({
                "object": format!("{kind}/{name}"),
                "spec": o["spec"],
                "labels": m["labels"],
                "annotations": m["annotations"],
                "finalizers": m["finalizers"],
                "resourceVersion": m["resourceVersion"],
                "generation": m["generation"],
            })
        })
        .collect()
}

/// Checks one node's NodeNetworkState spec against the seed; Err says what differs.
fn check_state(node: &str, block: &str, wireguard: bool) -> Result<Value, String> {
    let o = get_json("nodenetworkstates.ocelot.dev", node)?;
    let s = &o["spec"];
    let want_blocks = serde_json::json!([{"pool": "default-ipv4-ippool", "cidr": block}]);
    if s["blocks"] != want_blocks {
        return Err(format!("{node}: blocks {} want {want_blocks}", s["blocks"]));
    }
    if s["bgp"]["mesh"] != true {
        return Err(format!("{node}: bgp.mesh {}", s["bgp"]["mesh"]));
    }
    let peers = s["bgp"]["peers"].as_array().cloned().unwrap_or_default();
    if !peers
        .iter()
        .any(|p| p["peerIP"] == "198.19.15.254" && p["asNumber"] == 64512)
    {
        return Err(format!(
            "{node}: no peer 198.19.15.254 AS 64512 in {peers:?}"
        ));
    }
    if s["dataplane"]["wireguardEnabled"] != wireguard {
        return Err(format!(
            "{node}: dataplane.wireguardEnabled {} want {wireguard}",
            s["dataplane"]["wireguardEnabled"]
        ));
    }
    Ok(o)
}

fn state_versions() -> Vec<(String, Value)> {
    state_versions_of(&NODES.map(|(n, _, _)| n))
}

fn wait_seed_states(op: &mut Operator, wireguard: bool) {
    for (node, _, block) in NODES {
        let o = op.wait(
            &format!("NodeNetworkState {node} (wireguardEnabled {wireguard})"),
            || check_state(node, block, wireguard),
        );
        let managers: Vec<&Value> = o["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["operation"] == "Apply")
            .map(|f| &f["manager"])
            .collect();
        assert_eq!(managers, ["ocelot-operator"], "{node}: {o}");
    }
}

#[test]
fn seed_objects_become_node_network_states() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("operator.log");
    for (node, addr, block) in NODES {
        apply(&format!(
            "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: {node}\nspec:\n  bgp:\n    ipv4Address: {addr}\n"
        ));
        apply(&format!(
            "apiVersion: projectcalico.org/v3\nkind: BlockAffinity\nmetadata:\n  name: {}\nspec:\n  cidr: {block}\n  node: {node}\n  state: confirmed\n  type: host\n  deleted: false\n",
            affinity_name(node, block)
        ));
    }
    for f in [
        "ippool-default.yaml",
        "ippool-external.yaml",
        "bgppeer-global-host1.yaml",
        "felixconfiguration-default.yaml",
    ] {
        apply(&fixture(f));
    }
    let before = snapshot();

    let mut op = Operator::start(&log);
    wait_seed_states(&mut op, false);
    assert_eq!(before, snapshot(), "user objects changed by the operator");

    // The seed's patch reaches every node's dataplane settings.
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
        "kubectl patch felixconfiguration default",
    );
    wait_seed_states(&mut op, true);
    // Another writer's edit of a spec (here: blocks and hash) is put back.
    check(
        kubectl([
            "patch",
            "nodenetworkstates.ocelot.dev",
            "node1",
            "--type=merge",
            "-p",
            r#"{"spec":{"blocks":[],"hash":"edited"}}"#,
        ]),
        "kubectl patch nodenetworkstate node1",
    );
    wait_seed_states(&mut op, true);
    let patched = snapshot();
    let versions = state_versions();

    // Restart: the fresh list finds every spec current, so nothing is written.
    op.stop();
    let mut op = Operator::start(&log);
    let synced = op.wait("the restarted operator's initial reconcile", || {
        op_log_line(&log, "initial reconcile done")
    });
    assert!(
        synced.contains("nodes=3") && synced.contains("applied=0") && synced.contains("deleted=0"),
        "a restart with nothing changed must write nothing: {synced}"
    );
    sleep(Duration::from_secs(3));
    assert_eq!(
        versions,
        state_versions(),
        "NodeNetworkStates rewritten with nothing changed"
    );
    assert_eq!(patched, snapshot(), "user objects changed by the operator");

    // A node deleted while the operator is down loses its NodeNetworkState on the next start.
    op.stop();
    check(
        kubectl(["delete", "nodes.projectcalico.org", "node2"]),
        "kubectl delete node2",
    );
    let mut op = Operator::start(&log);
    op.wait("NodeNetworkState node2 to be deleted", || {
        match get_json("nodenetworkstates.ocelot.dev", "node2") {
            Err(e) if e.contains("NotFound") => Ok(()),
            Err(e) => Err(e),
            Ok(_) => Err("node2 still has a NodeNetworkState".into()),
        }
    });
    op.wait("the restarted operator's initial reconcile", || {
        op_log_line(&log, "initial reconcile done")
    });
    let after = state_versions_of(&["control", "node1"]);
    assert_eq!(
        after,
        versions
            .iter()
            .filter(|(n, _)| n != "node2")
            .cloned()
            .collect::<Vec<_>>(),
        "deleting node2 rewrote the other nodes' states"
    );
    op.stop();
}

fn state_versions_of(nodes: &[&str]) -> Vec<(String, Value)> {
    nodes
        .iter()
        .map(|n| {
            let o = get_json("nodenetworkstates.ocelot.dev", n).unwrap();
            (n.to_string(), o["metadata"]["resourceVersion"].clone())
        })
        .collect()
}

fn op_log_line(log: &Path, needle: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(log).map_err(|e| e.to_string())?;
    text.lines()
        .find(|l| l.contains(needle))
        .map(str::to_string)
        .ok_or_else(|| format!("no log line with {needle:?} yet"))
}
