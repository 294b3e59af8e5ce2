//! Pools as the engine sees them (defaults applied, selectors parsed), and pool selection for a pod.
use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::error::PoolSource;
use super::{Family, IpamError, addr_to_u128, u128_to_addr};
use crate::api::ippool::{AllowedUse, AssignmentMode, IPPoolSpec};
use crate::selector::Selector;

/// Pod/namespace annotation: IPv4 pools (JSON list of names or CIDRs).
pub const ANNOTATION_IPV4_POOLS: &str = "cni.projectcalico.org/ipv4pools";
/// Pod/namespace annotation: IPv6 pools (JSON list of names or CIDRs).
pub const ANNOTATION_IPV6_POOLS: &str = "cni.projectcalico.org/ipv6pools";
/// Pod annotation: explicit addresses (JSON list, at most one per family).
pub const ANNOTATION_IP_ADDRS: &str = "cni.projectcalico.org/ipAddrs";

/// An IPPool with Calico's defaults applied.
#[derive(Clone, Debug)]
pub struct Pool {
    /// Object name.
    pub name: String,
    /// Pool network.
    pub cidr: IpNet,
    /// Prefix length of its blocks.
    pub block_size: u8,
    /// No new assignment when true.
    pub disabled: bool,
    /// Parsed nodeSelector (empty = all()).
    pub node_selector: Selector,
    /// Parsed namespaceSelector (empty = all()).
    pub namespace_selector: Selector,
    /// allowedUses with the default [Workload, Tunnel].
    pub allowed_uses: Vec<AllowedUse>,
    /// assignmentMode Automatic (the default).
    pub automatic: bool,
}

impl Pool {
    /// Apply defaults and check what the engine relies on (the CRD schema checks the rest).
    pub fn from_spec(name: &str, spec: &IPPoolSpec) -> Result<Pool, IpamError> {
        let bad = |reason: String| IpamError::InvalidPool {
            pool: name.to_string(),
            reason,
        };
        let cidr: IpNet = spec
            .cidr
            .trim()
            .parse()
            .map_err(|e| bad(format!("cidr {:?} does not parse: {e}", spec.cidr)))?;
        if cidr.trunc() != cidr {
            return Err(bad(format!("cidr {cidr} has host bits set")));
        }
        let v6 = cidr.addr().is_ipv6();
        let bs = spec.effective_block_size(v6);
        let (lo, hi) = if v6 { (116, 128) } else { (20, 32) };
        if !(lo..=hi).contains(&bs) {
            return Err(bad(format!("blockSize {bs} is outside {lo}-{hi}")));
        }
        if !spec.disabled && i32::from(cidr.prefix_len()) > bs {
            return Err(bad(format!(
                "cidr {cidr} is smaller than one block (blockSize {bs})"
            )));
        }
        let parse_sel =
            |field: &str, s: &str| Selector::parse(s).map_err(|e| bad(format!("{field}: {e}")));
        Ok(Pool {
            name: name.to_string(),
            cidr,
            block_size: bs as u8,
            disabled: spec.disabled,
            node_selector: parse_sel("nodeSelector", spec.effective_node_selector())?,
            namespace_selector: parse_sel(
                "namespaceSelector",
                spec.namespace_selector.as_deref().unwrap_or(""),
            )?,
            allowed_uses: spec.effective_allowed_uses(),
            automatic: spec.assignment_mode != Some(AssignmentMode::Manual),
        })
    }

    /// Address family.
    pub fn family(&self) -> Family {
        Family::of(&self.cidr.addr())
    }

    /// Number of block-sized subnets; 0 when the pool is smaller than a block (disabled pools only).
    pub fn num_blocks(&self) -> u128 {
        let p = self.cidr.prefix_len();
        if p > self.block_size {
            return 0;
        }
        let bits = u32::from(self.block_size - p);
        if bits >= 128 {
            u128::MAX
        } else {
            1u128 << bits
        }
    }

    /// Addresses per block.
    pub fn block_len(&self) -> u128 {
        1u128 << (self.cidr.max_prefix_len() - self.block_size)
    }

    /// The i-th block-sized subnet.
    pub fn block_at(&self, i: u128) -> IpNet {
        let start = addr_to_u128(self.cidr.network()) + i * self.block_len();
        IpNet::new(u128_to_addr(start, self.family()), self.block_size)
            .expect("block size checked in from_spec")
    }

    /// Total addresses in the pool.
    pub fn size(&self) -> u128 {
        let bits = u32::from(self.cidr.max_prefix_len() - self.cidr.prefix_len());
        if bits >= 128 {
            u128::MAX
        } else {
            1u128 << bits
        }
    }

    /// Whether the pool's addresses may be used for `usage`.
    pub fn allows(&self, usage: AllowedUse) -> bool {
        self.allowed_uses.contains(&usage)
    }
}

/// What a pod asks for in one family: the pools to try, in order, and where that list came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FamilyPools {
    /// Pool names in the order to try.
    pub pools: Vec<String>,
    /// Pod annotation, namespace annotation or node selector.
    pub source: PoolSource,
}

/// The outcome of pool selection for one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSelection {
    /// IPv4 pools (may be empty only when the source is the node selector and no v4 pool qualifies).
    pub v4: FamilyPools,
    /// IPv6 pools.
    pub v6: FamilyPools,
    /// Explicit addresses from `ipAddrs` (at most one per family); when present they replace auto-assignment.
    pub explicit: Vec<IpAddr>,
}

/// The inputs of pool selection for one pod.
#[derive(Clone, Copy, Debug)]
pub struct PodContext<'a> {
    /// The pod's annotations.
    pub pod_annotations: &'a BTreeMap<String, String>,
    /// Its namespace's annotations.
    pub namespace_annotations: &'a BTreeMap<String, String>,
    /// Its namespace's labels, for namespaceSelector (None: not checked).
    pub namespace_labels: Option<&'a BTreeMap<String, String>>,
    /// The node's labels, for nodeSelector.
    pub node_labels: &'a BTreeMap<String, String>,
}

/// Checks the syntax of the pool annotations (`ipv4pools`, `ipv6pools`, `ipAddrs`: JSON lists of
/// strings) on a pod or namespace, without resolving the names against pools.
pub fn check_annotations(
    annotations: &BTreeMap<String, String>,
    source_kind: PoolSource,
) -> Result<(), IpamError> {
    for key in [
        ANNOTATION_IPV4_POOLS,
        ANNOTATION_IPV6_POOLS,
        ANNOTATION_IP_ADDRS,
    ] {
        parse_list(annotations, key, source_kind)?;
    }
    Ok(())
}

fn parse_list(
    annotations: &BTreeMap<String, String>,
    key: &str,
    source_kind: PoolSource,
) -> Result<Option<Vec<String>>, IpamError> {
    let Some(raw) = annotations.get(key) else {
        return Ok(None);
    };
    if raw.trim().is_empty() {
        return Ok(None);
    }
    let list: Vec<String> =
        serde_json::from_str(raw).map_err(|e| IpamError::MalformedAnnotation {
            annotation: key.to_string(),
            source_kind,
            reason: e.to_string(),
        })?;
    // An empty list is "not set", as Calico treats an empty pod annotation.
    Ok((!list.is_empty()).then_some(list))
}

/// Resolve a pool reference (name or CIDR) to a pool name, checking it may be used explicitly.
pub(crate) fn resolve_explicit<'p>(
    pools: &'p BTreeMap<String, Pool>,
    reference: &str,
    family: Family,
    source_kind: PoolSource,
    usage: AllowedUse,
) -> Result<&'p Pool, IpamError> {
    let reference = reference.trim();
    let pool = pools.get(reference).or_else(|| {
        let cidr: IpNet = reference.parse().ok()?;
        pools.values().find(|p| p.cidr == cidr)
    });
    let pool = pool.ok_or_else(|| IpamError::UnknownPool {
        pool: reference.to_string(),
        source_kind,
    })?;
    if pool.disabled {
        return Err(IpamError::PoolDisabled {
            pool: pool.name.clone(),
            source_kind,
        });
    }
    if pool.family() != family {
        return Err(IpamError::PoolWrongFamily {
            pool: pool.name.clone(),
            source_kind,
            wanted: family,
            actual: pool.family(),
        });
    }
    if !pool.allows(usage) {
        return Err(IpamError::PoolNotForUse {
            pool: pool.name.clone(),
            usage: format!("{usage:?}"),
        });
    }
    Ok(pool)
}

/// The enabled Automatic pools of a family whose selectors match, in name order.
pub(crate) fn automatic_pools(
    pools: &BTreeMap<String, Pool>,
    family: Family,
    usage: AllowedUse,
    node_labels: &BTreeMap<String, String>,
    namespace_labels: Option<&BTreeMap<String, String>>,
) -> Vec<String> {
    pools
        .values()
        .filter(|p| {
            !p.disabled
                && p.automatic
                && p.family() == family
                && p.allows(usage)
                && p.num_blocks() > 0
                && p.node_selector.matches(node_labels)
                && namespace_labels.is_none_or(|l| p.namespace_selector.matches(l))
        })
        .map(|p| p.name.clone())
        .collect()
}

/// Pool selection (Calico §6.2): pod annotation over namespace annotation, key by key, over the
/// automatic pools. Pools named in an annotation are used whatever their selectors say.
pub(crate) fn select(
    pools: &BTreeMap<String, Pool>,
    ctx: &PodContext<'_>,
) -> Result<PoolSelection, IpamError> {
    let family = |key: &str, fam: Family| -> Result<FamilyPools, IpamError> {
        let requested = match parse_list(ctx.pod_annotations, key, PoolSource::PodAnnotation)? {
            Some(l) => Some((l, PoolSource::PodAnnotation)),
            None => parse_list(
                ctx.namespace_annotations,
                key,
                PoolSource::NamespaceAnnotation,
            )?
            .map(|l| (l, PoolSource::NamespaceAnnotation)),
        };
        match requested {
            Some((list, source)) => {
                let mut names = Vec::with_capacity(list.len());
                for r in &list {
                    let p = resolve_explicit(pools, r, fam, source, AllowedUse::Workload)?;
                    if !names.contains(&p.name) {
                        names.push(p.name.clone());
                    }
                }
                Ok(FamilyPools {
                    pools: names,
                    source,
                })
            }
            None => Ok(FamilyPools {
                pools: automatic_pools(
                    pools,
                    fam,
                    AllowedUse::Workload,
                    ctx.node_labels,
                    ctx.namespace_labels,
                ),
                source: PoolSource::NodeSelector,
            }),
        }
    };
    let v4 = family(ANNOTATION_IPV4_POOLS, Family::V4)?;
    let v6 = family(ANNOTATION_IPV6_POOLS, Family::V6)?;
    let mut explicit = Vec::new();
    if let Some(list) = parse_list(
        ctx.pod_annotations,
        ANNOTATION_IP_ADDRS,
        PoolSource::PodAnnotation,
    )? {
        for s in list {
            let a: IpAddr = s
                .trim()
                .parse()
                .map_err(|_| IpamError::BadExplicitAddress {
                    reason: format!("{s:?} is not an IP address"),
                })?;
            if explicit.iter().any(|e: &IpAddr| e.is_ipv4() == a.is_ipv4()) {
                return Err(IpamError::BadExplicitAddress {
                    reason: "at most one IPv4 and one IPv6 address may be requested".into(),
                });
            }
            explicit.push(a);
        }
    }
    Ok(PoolSelection { v4, v6, explicit })
}
