//! What `ocelotctl` shows: the IPAM engine loaded from the API objects, the live pods as IPAM
//! sees them, the `node status` and `status` screens, and the machine-readable forms of the
//! `ipam show` / `ipam check` reports. The CLI only reads the objects and prints these.
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use crate::api::{IPAMBlock, IPPool};
use crate::ipam::{CheckReport, Ipam, IpamConfig, LivePod, ShowReport};

pub mod cluster;
pub mod node;
pub mod plan;
#[cfg(test)]
mod tests;

pub use cluster::{ClusterStatus, Leader, LeaseInfo};
pub use node::{AgentState, NodeStatus};

/// Pod annotation with the sandbox's container ID, as Calico's CNI plugin writes it.
pub const CONTAINER_ID_ANNOTATION: &str = "cni.projectcalico.org/containerID";

/// The IPAM engine holding `pools` and `blocks`, and one line per object it could not take
/// (named, with the reason), so one bad object does not hide the rest.
pub fn load_ipam(pools: &[IPPool], blocks: &[IPAMBlock]) -> (Ipam, Vec<String>) {
    let mut ipam = Ipam::new(IpamConfig::default());
    let mut skipped = Vec::new();
    for p in pools {
        let name = p.metadata.name.as_deref().unwrap_or("?");
        if let Err(e) = ipam.upsert_pool(name, &p.spec) {
            skipped.push(format!("IPPool {name} skipped: {e}"));
        }
    }
    for b in blocks {
        if let Err(e) = ipam.observe_block(&b.spec) {
            let name = b.metadata.name.as_deref().unwrap_or("?");
            skipped.push(format!("IPAMBlock {name} skipped: {e}"));
        }
    }
    (ipam, skipped)
}

/// A pod as IPAM sees it; None for a pod that holds no address any more (finished, or not
/// scheduled yet).
pub fn live_pod(pod: &Pod) -> Option<LivePod> {
    let status = pod.status.as_ref();
    if matches!(
        status.and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    ) {
        return None;
    }
    let spec = pod.spec.as_ref()?;
    let node = spec.node_name.clone()?;
    // A host-network pod's IP is its node's: no IPAM address (Calico's `ipam check` skips them too).
    let ips: Vec<IpAddr> = if spec.host_network == Some(true) {
        Vec::new()
    } else {
        status
            .and_then(|s| s.pod_ips.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|i| i.ip.parse().ok())
            .collect()
    };
    Some(LivePod {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        node,
        container_id: pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CONTAINER_ID_ANNOTATION).cloned()),
        ips,
    })
}

/// `ipam show` as JSON: every pool with its numbers and blocks, and the blocks outside pools.
pub fn show_json(r: &ShowReport) -> Value {
    let block = |b: &crate::ipam::BlockUsage| {
        json!({
            "cidr": b.cidr.to_string(),
            "affinity": b.affinity,
            "total": b.total,
            "inUse": b.in_use,
            "free": b.free,
        })
    };
    json!({
        "pools": r.pools.iter().map(|p| json!({
            "name": p.name,
            "cidr": p.cidr.to_string(),
            "total": p.total,
            "inUse": p.in_use,
            "free": p.free,
            "blocks": p.blocks.iter().map(block).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "blocksOutsidePools": r.orphaned.iter().map(block).collect::<Vec<_>>(),
    })
}

/// `ipam check` as JSON (the `-o FILE` report): every finding, and the counts.
pub fn check_json(r: &CheckReport) -> Value {
    let strings = |v: &[IpAddr]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
    json!({
        "problems": r.problems(),
        "extraFindings": r.extra_findings(),
        "leakedAddresses": r.leaked.iter().map(|l| json!({
            "address": l.address.to_string(),
            "handle": l.handle,
            "block": l.block.to_string(),
            "allocatedTo": l.allocated_to,
        })).collect::<Vec<_>>(),
        "inUseOutsidePools": strings(&r.in_use_outside_pools),
        "inUseUnallocated": strings(&r.in_use_unallocated),
        "handlesWithoutAddresses": r.handles_without_addresses,
        "handlesWithAddresses": r.handles_with_addresses,
        "blocksOutsidePools": r.orphaned_blocks.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "blocksOfMissingNodes": r.blocks_of_missing_nodes.iter().map(|(b, n)| json!({
            "block": b.to_string(),
            "node": n,
        })).collect::<Vec<_>>(),
        "overlappingBlocks": r.overlapping_blocks.iter()
            .map(|(a, b)| [a.to_string(), b.to_string()]).collect::<Vec<_>>(),
        "wrongSizeBlocks": r.wrong_size_blocks.iter().map(|(b, p, s)| json!({
            "block": b.to_string(), "pool": p, "blockSize": s,
        })).collect::<Vec<_>>(),
        "duplicateAllocations": r.duplicate_allocations.iter().map(|(a, o)| json!({
            "address": a.to_string(), "owners": o,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod live_pod_tests {
    use super::*;

    fn pod(host_network: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"namespace": "kube-system", "name": "ocelot-agent-x"},
            "spec": {"nodeName": "node2", "hostNetwork": host_network, "containers": []},
            "status": {"phase": "Running", "podIPs": [{"ip": "198.19.0.3"}]},
        }))
        .unwrap()
    }

    #[test]
    fn a_host_network_pod_holds_no_ipam_address() {
        assert!(live_pod(&pod(true)).unwrap().ips.is_empty());
        let ips = live_pod(&pod(false)).unwrap().ips;
        assert_eq!(ips, vec!["198.19.0.3".parse::<IpAddr>().unwrap()]);
    }
}
