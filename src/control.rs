//! The operator's decisions beyond the per-node composer of [`crate::index`]: which pools may be
//! allocated from, which blocks a node must claim, the address a Calico Node gets from its
//! Kubernetes Node, and which reported WireGuard keys are published. Pure: the operator feeds in
//! what it watched and writes out what these return.
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

use crate::api::ippool::{EncapMode, IPPool};
use crate::ipam::{FamilyPools, Ipam, PoolSource, vxlan_handle, wireguard_handle};
use crate::validation::validate_ippool;
use crate::wireguard::{KeyProblem, check_reported_key};

/// Stable reasons of the IPPool `Allocatable` condition.
pub mod pool_reason {
    /// Blocks may be carved from the pool.
    pub const OK: &str = "OK";
    /// The CIDR overlaps an older pool.
    pub const CIDR_OVERLAP: &str = "CIDROverlap";
    /// `spec.disabled: true`.
    pub const DISABLED: &str = "PoolDisabled";
    /// The spec breaks a validation rule (the API server's CEL normally refuses it first).
    pub const INVALID: &str = "Invalid";
}

/// Whether a pool may be allocated from, with the condition's reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolVerdict {
    /// Blocks may be claimed and addresses assigned from it.
    pub allocatable: bool,
    /// One of [`pool_reason`].
    pub reason: &'static str,
    /// Human message naming the object, field and rule.
    pub message: String,
}

impl PoolVerdict {
    /// A valid pool that is not allocatable only because it is disabled still counts as valid.
    pub fn is_valid(&self) -> bool {
        self.reason == pool_reason::OK || self.reason == pool_reason::DISABLED
    }
}

/// The verdict of every pool. Overlaps are decided as Calico's API server refuses them: the pool
/// created first keeps its CIDR (ties by name), a later pool overlapping any valid one is
/// `CIDROverlap` and never allocated from. Keyed by pool name.
pub fn pool_verdicts(pools: &[IPPool]) -> BTreeMap<String, PoolVerdict> {
    let mut order: Vec<&IPPool> = pools.iter().filter(|p| p.metadata.name.is_some()).collect();
    order.sort_by(|a, b| {
        let ts = |p: &IPPool| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        ts(a)
            .cmp(&ts(b))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    let mut valid: Vec<(String, IpNet)> = Vec::new();
    let mut out = BTreeMap::new();
    for p in order {
        let name = p.metadata.name.clone().unwrap_or_default();
        let verdict = match (validate_ippool(p), p.spec.cidr.parse::<IpNet>()) {
            (Err(e), _) => PoolVerdict {
                allocatable: false,
                reason: pool_reason::INVALID,
                message: format!("IPPool {name:?}: {e}"),
            },
            (Ok(()), Err(e)) => PoolVerdict {
                allocatable: false,
                reason: pool_reason::INVALID,
                message: format!("IPPool {name:?}: spec.cidr {:?}: {e}", p.spec.cidr),
            },
            (Ok(()), Ok(cidr)) => {
                let cidr = cidr.trunc();
                let clash = valid
                    .iter()
                    .find(|(_, other)| other.contains(&cidr) || cidr.contains(other));
                match clash {
                    Some((other, other_cidr)) => PoolVerdict {
                        allocatable: false,
                        reason: pool_reason::CIDR_OVERLAP,
                        message: format!(
                            "IPPool {name:?}: spec.cidr {cidr} overlaps IPPool {other:?} ({other_cidr}), which was created first: pool CIDRs must not overlap; no block is claimed from this pool"
                        ),
                    },
                    None => {
                        valid.push((name.clone(), cidr));
                        if p.spec.disabled {
                            PoolVerdict {
                                allocatable: false,
                                reason: pool_reason::DISABLED,
                                message: format!(
                                    "IPPool {name:?}: spec.disabled is true; no new addresses are assigned from it"
                                ),
                            }
                        } else {
                            PoolVerdict {
                                allocatable: true,
                                reason: pool_reason::OK,
                                message: format!("IPPool {name:?} ({cidr}) is allocatable"),
                            }
                        }
                    }
                }
            }
        };
        out.insert(name, verdict);
    }
    out
}

/// The pools `node` must claim a new block from now: every automatic pool selecting the node
/// from which it holds no block yet (Calico claims on the first pod; Ocelot claims on join so the
/// first pod never waits), and every pool its agent asked for in `status.blockDemand` where none
/// of its blocks has a free address. Pools missing from the engine (invalid, overlapping) are
/// never claimed from. Sorted, without duplicates.
pub fn claims_needed(
    ipam: &Ipam,
    node: &str,
    labels: &BTreeMap<String, String>,
    demand: &[String],
) -> Vec<String> {
    let blocks = ipam.node_blocks(node);
    let pool_of = |b: &IpNet| ipam.pool_of(b).map(|p| p.name.as_str());
    let mut out = BTreeSet::new();
    for pool in ipam.pools_for_node(labels) {
        if !blocks.iter().any(|b| pool_of(b) == Some(pool.as_str())) {
            out.insert(pool);
        }
    }
    for pool in demand {
        let Some(p) = ipam.pool(pool) else { continue };
        if p.disabled {
            continue;
        }
        let has_room = blocks.iter().any(|b| {
            pool_of(b) == Some(pool.as_str()) && ipam.block(b).is_some_and(|blk| blk.free() > 0)
        });
        if !has_room {
            out.insert(pool.clone());
        }
    }
    out.into_iter().collect()
}

/// What to do with a node's WireGuard interface address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TunnelAddress {
    /// It holds the right one (or needs none): nothing to do.
    Keep(Option<Ipv4Addr>),
    /// Assign one from the node's own blocks.
    Assign,
    /// WireGuard is off: release what it holds.
    Release(Vec<IpAddr>),
}

/// The WireGuard interface address decision for `node` (handle `wireguard-tunnel-addr-<node>`):
/// assigned once WireGuard is on and the node has a block, released when it is switched off.
pub fn wireguard_address(ipam: &Ipam, node: &str, enabled: bool) -> TunnelAddress {
    tunnel_address(ipam, &wireguard_handle(node), node, enabled)
}

/// The VXLAN tunnel address decision for `node` (handle `vxlan-tunnel-addr-<node>`, as
/// Calico): assigned while a VXLAN pool selects the node ([`vxlan_pools`] not empty) and the node
/// has a block, released when none does any more.
pub fn vxlan_address(ipam: &Ipam, node: &str, wanted: bool) -> TunnelAddress {
    tunnel_address(ipam, &vxlan_handle(node), node, wanted)
}

/// The pools a node's VXLAN tunnel address comes from, as Calico's: the enabled pools with
/// vxlanMode Always or CrossSubnet whose nodeSelector matches the node and that allow the Tunnel
/// use.
pub fn vxlan_pools(
    ipam: &Ipam,
    pools: &BTreeMap<String, IPPool>,
    node_labels: &BTreeMap<String, String>,
) -> FamilyPools {
    let vxlan = |name: &String| {
        pools
            .get(name)
            .is_some_and(|p| p.spec.vxlan_mode.unwrap_or_default() != EncapMode::Never)
    };
    let mut fp = ipam.tunnel_pools(crate::ipam::Family::V4, node_labels);
    fp.pools.retain(vxlan);
    fp.source = PoolSource::NodeSelector;
    fp
}

fn tunnel_address(ipam: &Ipam, handle: &str, node: &str, enabled: bool) -> TunnelAddress {
    let held = ipam.handle_addresses(handle);
    let v4 = held.iter().find_map(|a| match a {
        IpAddr::V4(v4) => Some(*v4),
        IpAddr::V6(_) => None,
    });
    match (enabled, held.is_empty()) {
        (true, false) => TunnelAddress::Keep(v4),
        (true, true) if ipam.node_blocks(node).is_empty() => TunnelAddress::Keep(None),
        (true, true) => TunnelAddress::Assign,
        (false, true) => TunnelAddress::Keep(None),
        (false, false) => TunnelAddress::Release(held),
    }
}

/// The address a Calico Node's `spec.bgp.ipv4Address` gets from its Kubernetes Node's InternalIP:
/// the address with the prefix length of the node subnet (e.g. `198.19.0.2/20`).
pub fn node_bgp_address(internal_ip: Ipv4Addr, prefix_len: u8) -> String {
    format!("{internal_ip}/{}", prefix_len.min(32))
}

/// The first IPv4 InternalIP of a Kubernetes Node's `status.addresses` (type, address) pairs.
pub fn internal_ipv4<'a>(
    addresses: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Option<Ipv4Addr> {
    addresses
        .into_iter()
        .filter(|(t, _)| *t == "InternalIP")
        .find_map(|(_, a)| a.parse::<Ipv4Addr>().ok())
}

/// The WireGuard keys to publish: every node's reported key that passes
/// [`check_reported_key`] against the others, and the refused ones with why. A key two nodes
/// report is refused for the node that reported it later (`first_reported` order: the node
/// already publishing keeps it), so re-running with the same inputs gives the same answer.
pub fn published_keys(
    reported: &BTreeMap<String, String>,
    already_published: &BTreeMap<String, String>,
) -> (BTreeMap<String, String>, BTreeMap<String, KeyProblem>) {
    let mut published: BTreeMap<String, String> = BTreeMap::new();
    let mut refused = BTreeMap::new();
    // Nodes that already publish their (unchanged) key go first, so a newcomer cannot take it.
    let mut order: Vec<(&String, &String)> = reported.iter().collect();
    order.sort_by_key(|(node, key)| (already_published.get(*node) != Some(*key), node.as_str()));
    for (node, key) in order {
        match check_reported_key(node, key, &published) {
            Ok(()) => {
                published.insert(node.clone(), key.clone());
            }
            Err(problem) => {
                refused.insert(node.clone(), problem);
            }
        }
    }
    (published, refused)
}

/// What is wrong with a namespace's pool annotations (`cni.projectcalico.org/ipv4pools`,
/// `ipv6pools`): not a JSON list of strings, or naming a pool (by name or CIDR) that does not
/// exist, is invalid or disabled, or is of the other family. Each message names the namespace,
/// the annotation and the problem. Empty when the annotations are fine or absent.
pub fn namespace_pool_problems(
    namespace: &str,
    annotations: &BTreeMap<String, String>,
    ipam: &Ipam,
) -> Vec<String> {
    use crate::ipam::{
        ANNOTATION_IPV4_POOLS, ANNOTATION_IPV6_POOLS, Family, PoolSource, check_annotations,
    };
    if let Err(e) = check_annotations(annotations, PoolSource::NamespaceAnnotation) {
        return vec![format!("namespace {namespace:?}: {e}")];
    }
    let mut out = Vec::new();
    for (key, family) in [
        (ANNOTATION_IPV4_POOLS, Family::V4),
        (ANNOTATION_IPV6_POOLS, Family::V6),
    ] {
        let Some(raw) = annotations.get(key).filter(|r| !r.trim().is_empty()) else {
            continue;
        };
        let refs: Vec<String> = serde_json::from_str(raw).unwrap_or_default();
        for r in refs {
            let r = r.trim();
            let pool = ipam.pool(r).or_else(|| {
                let cidr: IpNet = r.parse().ok()?;
                ipam.pools().find(|p| p.cidr == cidr.trunc())
            });
            let problem = match pool {
                None => Some(format!(
                    "names IPPool {r:?}, which does not exist or is invalid"
                )),
                Some(p) if p.disabled => {
                    Some(format!("names IPPool {:?}, which is disabled", p.name))
                }
                Some(p) if p.family() != family => Some(format!(
                    "names IPPool {:?}, an {} pool, in the {family} list",
                    p.name,
                    p.family()
                )),
                Some(_) => None,
            };
            if let Some(problem) = problem {
                out.push(format!("namespace {namespace:?}: annotation {key} {problem}; pods there fail to get an address"));
            }
        }
    }
    out
}

/// The Calico release whose API Ocelot serves, as ClusterInformation's `calicoVersion` reports it.
pub const CALICO_COMPAT_VERSION: &str = "v3.31.0";
/// ClusterInformation's `clusterType`: Kubernetes datastore, BGP networking, served by Ocelot.
pub const CLUSTER_TYPE: &str = "k8s,bgp,kdd,ocelot";

/// The ClusterInformation `default` spec the operator keeps once its caches are synced, or None when
/// `existing` already says it: the clusterGUID, once set, is kept forever (`new_guid` is called only
/// when there is none).
pub fn cluster_information(
    existing: Option<&crate::api::ClusterInformationSpec>,
    new_guid: impl FnOnce() -> String,
) -> Option<crate::api::ClusterInformationSpec> {
    let guid = existing
        .and_then(|e| e.cluster_guid.clone())
        .filter(|g| !g.is_empty())
        .unwrap_or_else(new_guid);
    let want = crate::api::ClusterInformationSpec {
        cluster_guid: Some(guid),
        cluster_type: Some(CLUSTER_TYPE.into()),
        calico_version: Some(CALICO_COMPAT_VERSION.into()),
        datastore_ready: Some(true),
        variant: existing.and_then(|e| e.variant.clone()),
    };
    (existing != Some(&want)).then_some(want)
}

#[cfg(test)]
#[path = "control_tests.rs"]
mod tests;
