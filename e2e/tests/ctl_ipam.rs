//! `ocelotctl ipam show|check|release` against the real kube-apiserver, on IPAMBlocks written as
//! the agents write them: the numbers equal the blocks' allocations; `check` reports a
//! deliberately leaked address (its pod is gone) and a deliberately orphaned block (its node is
//! gone); `release` refuses a live pod's address, releases a leaked one, and with `--force` the
//! live one, each a conditional replace of the block that fails against a newer version.
use std::collections::HashSet;
use std::net::IpAddr;

use ocelot::api::ipam::IPAMBlockSpec;
use ocelot::ipam::{Attr, Block, Ipam, IpamConfig, host_affinity};
use ocelot_e2e::cluster::{check, client, kubectl};
use ocelot_e2e::ctl::{assert_fails_with, get_block, ipam_block, ocelotctl, stderr, stdout};
use ocelot_e2e::operator::{apply, namespace, pod, register_node};
use serde_json::Value;

const NS: &str = "ctl-ns";
const NODE: &str = "ctl-ipam-node";
const GHOST: &str = "ctl-ghost";
const LIVE_BLOCK: &str = "10-77-0-0-26";
const GHOST_BLOCK: &str = "10-77-0-64-26";

fn pod_attr(pod: &str, node: &str) -> Attr {
    Attr::new(
        Some(&format!("k8s-pod-network.{pod}")),
        [
            ("namespace".to_string(), NS.to_string()),
            ("pod".to_string(), pod.to_string()),
            ("node".to_string(), node.to_string()),
        ],
    )
}

fn block(cidr: &str, node: &str, records: Vec<(u32, Attr)>) -> IPAMBlockSpec {
    let mut b = Block::new(cidr.parse().unwrap(), Some(host_affinity(node)), None, 1);
    for (ord, attr) in records {
        assert!(b.assign_ordinal(ord, attr, 2));
    }
    b.to_spec()
}

fn setup() {
    namespace(NS);
    register_node(NODE, "198.19.0.9");
    pod(NS, "alive", NODE, &[]);
    pod(NS, "alive2", GHOST, &[]);
    apply(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: ctl-pool\nspec:\n  cidr: 10.77.0.0/24\n  blockSize: 26\n  nodeSelector: all()\n",
    );
    // node's block: a live pod, a deleted pod (leaked), the node's WireGuard address.
    let wg = Attr::new(
        Some(&format!("wireguard-tunnel-addr-{NODE}")),
        [
            ("node".to_string(), NODE.to_string()),
            ("type".to_string(), "wireguardTunnelAddress".to_string()),
        ],
    );
    ipam_block(block(
        "10.77.0.0/26",
        NODE,
        vec![
            (0, pod_attr("alive", NODE)),
            (1, pod_attr("deleted", NODE)),
            (2, wg),
        ],
    ));
    // A block of a node that no longer exists (orphaned), still holding a live pod's address.
    ipam_block(block(
        "10.77.0.64/26",
        GHOST,
        vec![(0, pod_attr("alive2", GHOST))],
    ));
}

/// Allocated ordinals of a stored block.
fn allocated(name: &str) -> usize {
    get_block(name)
        .spec
        .allocations
        .iter()
        .filter(|a| a.is_some())
        .count()
}

/// The `ipam show --show-blocks` row whose CIDR is `cidr`, as trimmed cells.
fn row(table: &str, cidr: &str) -> Vec<String> {
    table
        .lines()
        .map(|l| {
            l.split('|')
                .map(|c| c.trim().to_string())
                .collect::<Vec<_>>()
        })
        .find(|cells| cells.get(2).is_some_and(|c| c == cidr))
        .unwrap_or_else(|| panic!("no row for {cidr} in\n{table}"))
}

/// In-use numbers of the pool and both blocks equal the stored allocations.
fn show_matches_blocks() -> usize {
    let table = check(ocelotctl(["ipam", "show", "--show-blocks"]), "ipam show");
    assert!(
        table.contains("| GROUPING |") && table.contains("| IPS TOTAL | IPS IN USE |"),
        "{table}"
    );
    let (live, ghost) = (allocated(LIVE_BLOCK), allocated(GHOST_BLOCK));
    let pct = |n: usize, of: usize| format!("{n} ({:.0}%)", n as f64 * 100.0 / of as f64);
    assert_eq!(
        row(&table, "10.77.0.0/24")[1..],
        [
            "IP Pool",
            "10.77.0.0/24",
            "256",
            &pct(live + ghost, 256),
            &pct(256 - live - ghost, 256),
            ""
        ]
    );
    assert_eq!(
        row(&table, "10.77.0.0/26")[3..5],
        ["64".to_string(), pct(live, 64)]
    );
    assert_eq!(
        row(&table, "10.77.0.64/26")[3..5],
        ["64".to_string(), pct(ghost, 64)]
    );
    let plain = check(ocelotctl(["ipam", "show"]), "ipam show");
    assert!(
        !plain.contains("| Block"),
        "blocks only with --show-blocks:\n{plain}"
    );
    let json: Value = serde_json::from_str(&check(
        ocelotctl(["ipam", "show", "-o", "json"]),
        "ipam show -o json",
    ))
    .unwrap();
    assert_eq!(
        json["pools"][0]["inUse"].as_u64(),
        Some((live + ghost) as u64)
    );
    live + ghost
}

/// The release write is a compare-and-swap: computed from a version another writer has replaced
/// since, it fails and releases nothing.
fn stale_write_is_refused() {
    let stale = get_block(LIVE_BLOCK);
    let mut ipam = Ipam::new(IpamConfig::default());
    ipam.observe_block(&stale.spec).unwrap();
    let leaked: IpAddr = "10.77.0.1".parse().unwrap();
    let r = ipam
        .release_checked(leaked, &[], &HashSet::new(), false)
        .unwrap();
    // Another writer: any change gives the object a new resourceVersion.
    check(
        kubectl([
            "label",
            "ipamblocks.projectcalico.org",
            LIVE_BLOCK,
            "ctl-test=bumped",
        ]),
        "label the block",
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt
        .block_on(async { ocelot_ctl::write_block(&client().await, &stale, &r.write).await })
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("IPAMBlock 10-77-0-0-26 changed after it was read"),
        "{err:#}"
    );
    assert_eq!(get_block(LIVE_BLOCK).spec, stale.spec, "nothing released");
}

#[test]
fn ipam_show_check_release() {
    setup();
    assert_eq!(show_matches_blocks(), 4);
    stale_write_is_refused();

    // check: the deleted pod's address leaked, the ghost node's block orphaned; exit 1.
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let out = ocelotctl(["ipam", "check", "-o", report.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(
        text.contains("Found 1 IPs that are allocated in IPAM but not actually in use.\n"),
        "{text}"
    );
    assert!(
        text.contains("  10.77.0.1 leaked; handle k8s-pod-network.deleted, block 10.77.0.0/26, allocated to ctl-ns/deleted\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "  1 blocks affine to a node that does not exist\n    10.77.0.64/26 (host:ctl-ghost)\n"
        ),
        "{text}"
    );
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["leakedAddresses"][0]["address"], "10.77.0.1");
    assert_eq!(json["leakedAddresses"].as_array().unwrap().len(), 1);
    assert_eq!(json["blocksOfMissingNodes"][0]["node"], GHOST);

    // release: a live pod's address is refused and the block is not written.
    let before = get_block(LIVE_BLOCK);
    let refused = ocelotctl(["ipam", "release", "--ip", "10.77.0.0"]);
    assert_fails_with(
        &refused,
        "10.77.0.0 is in use by pod ctl-ns/alive (handle k8s-pod-network.alive); delete that first, or pass --force",
    );
    let wg = ocelotctl(["ipam", "release", "--ip", "10.77.0.2"]);
    assert_fails_with(&wg, "node ctl-ipam-node (tunnel address)");
    assert_eq!(
        get_block(LIVE_BLOCK).metadata.resource_version,
        before.metadata.resource_version
    );

    // The leaked one goes without --force; then the live one with it.
    let ok = check(
        ocelotctl(["ipam", "release", "--ip", "10.77.0.1"]),
        "release leaked",
    );
    assert_eq!(ok, "Successfully released IP address 10.77.0.1\n");
    let after = get_block(LIVE_BLOCK);
    assert_eq!(after.spec.allocations[1], None);
    assert!(after.spec.unallocated.contains(&1));
    assert_eq!(
        after.spec.sequence_number,
        before.spec.sequence_number.map(|s| s + 1)
    );
    let out = ocelotctl(["ipam", "check"]);
    assert!(
        stdout(&out).contains("Found 0 IPs that are allocated in IPAM but not actually in use."),
        "{}",
        stdout(&out)
    );

    let forced = ocelotctl(["ipam", "release", "--ip", "10.77.0.0", "--force"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert!(
        stderr(&forced).contains("pod ctl-ns/alive still uses 10.77.0.0"),
        "{}",
        stderr(&forced)
    );
    let b = get_block(LIVE_BLOCK);
    assert_eq!(b.spec.allocations[0], None);
    assert!(
        !b.spec
            .attributes
            .iter()
            .any(|a| a.handle_id.as_deref() == Some("k8s-pod-network.alive")),
        "{:?}",
        b.spec.attributes
    );
    let wg_addr: IpAddr = "10.77.0.2".parse().unwrap();
    let parsed = Block::from_spec(&b.spec).unwrap();
    assert!(
        parsed.attr(parsed.ordinal(wg_addr).unwrap()).is_some(),
        "the tunnel address stays"
    );
    assert_eq!(show_matches_blocks(), 2);

    let again = ocelotctl(["ipam", "release", "--ip", "10.77.0.0"]);
    assert_fails_with(&again, "10.77.0.0 is not allocated in block 10.77.0.0/26");
}
