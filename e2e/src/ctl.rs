//! Running `ocelotctl` and `kubectl ocelot` against the shared test cluster, and writing the
//! objects the CLI reads (NodeNetworkState with status, IPAMBlocks with allocations) as the
//! operator and agents would.
use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Output};

use ocelot::api::NodeNetworkState;
use ocelot::api::ipam::{IPAMBlock, IPAMBlockSpec};
use ocelot::api::nodestate::NodeNetworkStateStatus;
use serde::Serialize;

use crate::cluster::{self, COMMAND_TIMEOUT, check, kubectl, kubectl_stdin};
use crate::daemon::sibling_binary;
use crate::proc::run_output;

/// `ocelotctl` built next to the test binary (`cargo build -p ocelot-ctl` builds it).
pub fn ocelotctl_binary() -> PathBuf {
    sibling_binary("ocelotctl")
}

/// `ocelotctl --kubeconfig <shared cluster> ARGS`.
pub fn ocelotctl<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(ocelotctl_binary());
    cmd.arg("--kubeconfig")
        .arg(cluster::kubeconfig_path())
        .args(args);
    run_output(&mut cmd, None, COMMAND_TIMEOUT)
}

/// `kubectl ocelot ARGS` as a user runs it: kubectl finds `kubectl-ocelot` on PATH (the folder the
/// CLI was built into) and passes KUBECONFIG through.
pub fn kubectl_ocelot<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let plugin = sibling_binary("kubectl-ocelot");
    let dir = plugin.parent().expect("binary in a folder");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path = std::env::join_paths(
        std::iter::once(dir.to_path_buf()).chain(std::env::split_paths(&path)),
    )
    .expect("PATH entries");
    let kubectl = cluster::binary("kubectl").unwrap_or_else(|e| panic!("{e:#}"));
    let mut cmd = Command::new(kubectl);
    cmd.arg("ocelot")
        .args(args)
        .env("PATH", path)
        .env("KUBECONFIG", cluster::kubeconfig_path());
    run_output(&mut cmd, None, COMMAND_TIMEOUT)
}

/// Stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the run failed with exit code 1 and said `needle` on stderr.
#[track_caller]
pub fn assert_fails_with(out: &Output, needle: &str) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit 1; stderr: {}",
        stderr(out)
    );
    assert!(
        stderr(out).contains(needle),
        "stderr lacks {needle:?}: {}",
        stderr(out)
    );
}

/// `kubectl apply` of an object serialised as JSON.
pub fn apply_object<T: Serialize>(obj: &T, what: &str) {
    let json = serde_json::to_string(obj).expect("object serialises");
    check(kubectl_stdin(["apply", "-f", "-"], &json), what);
}

/// A NodeNetworkState (spec as the operator writes it) with `status` as its agent would write it.
pub fn node_state(nns: &NodeNetworkState, status: &NodeNetworkStateStatus) {
    let name = nns.metadata.name.clone().expect("named");
    apply_object(nns, &format!("apply NodeNetworkState {name}"));
    let patch = serde_json::json!({ "status": status });
    check(
        kubectl([
            "patch",
            "nodenetworkstates.ocelot.dev",
            &name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch.to_string(),
        ]),
        &format!("patch NodeNetworkState {name} status"),
    );
}

/// An IPAMBlock with this spec, named as Calico names it.
pub fn ipam_block(spec: IPAMBlockSpec) {
    let cidr: ipnet::IpNet = spec.cidr.parse().expect("block CIDR");
    let name = ocelot::ipam::block_name(&cidr);
    let mut b = IPAMBlock::new(&name, spec);
    b.metadata.labels = ocelot::ipam::block_labels(&b.spec);
    apply_object(&b, &format!("apply IPAMBlock {name}"));
}

/// An IPAMBlock as stored.
pub fn get_block(name: &str) -> IPAMBlock {
    let out = check(
        kubectl(["get", "ipamblocks.projectcalico.org", name, "-o", "json"]),
        &format!("get IPAMBlock {name}"),
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("IPAMBlock {name}: {e}"))
}
