//! Data for `ipam show` and `ipam check`, with calicoctl's numbers and number formats (§6.7, §6.8).
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{Duration, UNIX_EPOCH};

use ipnet::IpNet;

use super::gc::{GcInput, GcState, LivePod};
use super::{Ipam, addr_to_u128};

/// One block row of `ipam show --show-blocks`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockUsage {
    /// Block CIDR.
    pub cidr: IpNet,
    /// Affinity (`host:node1`), if any.
    pub affinity: Option<String>,
    /// Addresses in the block.
    pub total: u128,
    /// size − len(unallocated).
    pub in_use: u128,
    /// Free addresses.
    pub free: u128,
}

/// One pool row of `ipam show`, with its blocks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolUsage {
    /// Pool name.
    pub name: String,
    /// Pool CIDR.
    pub cidr: IpNet,
    /// 2^(bits − prefix).
    pub total: u128,
    /// Sum over its blocks of allocated addresses.
    pub in_use: u128,
    /// total − in use (addresses without a block count as free).
    pub free: u128,
    /// Its blocks by address.
    pub blocks: Vec<BlockUsage>,
}

/// `ipam show` data.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ShowReport {
    /// Pools by name.
    pub pools: Vec<PoolUsage>,
    /// Blocks outside every pool (calicoctl's "orphaned allocation blocks", 0.0.0.0/0).
    pub orphaned: Vec<BlockUsage>,
}

/// An address allocated in IPAM that no live pod or node uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeakedAddress {
    /// The address.
    pub address: IpAddr,
    /// Its handle.
    pub handle: String,
    /// Its block.
    pub block: IpNet,
    /// `namespace/pod` from its attributes, if any.
    pub allocated_to: Option<String>,
}

/// `ipam check` data.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CheckReport {
    /// Allocated in IPAM but not in use (grace period not applied).
    pub leaked: Vec<LeakedAddress>,
    /// Addresses live pods report that lie outside every pool.
    pub in_use_outside_pools: Vec<IpAddr>,
    /// Addresses live pods report inside a pool that have no allocation.
    pub in_use_unallocated: Vec<IpAddr>,
    /// Blocks outside every pool.
    pub orphaned_blocks: Vec<IpNet>,
    /// Pairs of blocks that overlap.
    pub overlapping_blocks: Vec<(IpNet, IpNet)>,
    /// Blocks of a pool whose prefix differs from the pool's blockSize: (block, pool, blockSize).
    pub wrong_size_blocks: Vec<(IpNet, String, u8)>,
    /// Addresses with more than one owner (allocated in two blocks, or reported by two pods).
    pub duplicate_allocations: Vec<(IpAddr, Vec<String>)>,
}

impl CheckReport {
    /// Number of problems, as the last line of `ipam check` counts them.
    pub fn problems(&self) -> usize {
        self.leaked.len()
            + self.in_use_outside_pools.len()
            + self.in_use_unallocated.len()
            + self.orphaned_blocks.len()
            + self.overlapping_blocks.len()
            + self.wrong_size_blocks.len()
            + self.duplicate_allocations.len()
    }

    /// calicoctl's closing line.
    pub fn summary(&self) -> String {
        format!("Check complete; found {} problems.", self.problems())
    }
}

fn usage(b: &super::Block) -> BlockUsage {
    BlockUsage {
        cidr: b.cidr(),
        affinity: b.affinity.clone(),
        total: u128::from(b.size()),
        in_use: u128::from(b.allocated()),
        free: u128::from(b.free()),
    }
}

impl Ipam {
    /// `ipam show` data: per pool and per block totals, in use and free.
    pub fn show(&self) -> ShowReport {
        let mut pools: BTreeMap<&str, PoolUsage> = self
            .pools()
            .map(|p| {
                (
                    p.name.as_str(),
                    PoolUsage {
                        name: p.name.clone(),
                        cidr: p.cidr,
                        total: p.size(),
                        in_use: 0,
                        free: p.size(),
                        blocks: Vec::new(),
                    },
                )
            })
            .collect();
        let mut orphaned = Vec::new();
        for b in self.blocks() {
            let u = usage(b);
            match self.pool_of(&b.cidr()) {
                Some(p) => {
                    let pu = pools.get_mut(p.name.as_str()).expect("pool listed");
                    pu.in_use += u.in_use;
                    pu.free = pu.total.saturating_sub(pu.in_use);
                    pu.blocks.push(u);
                }
                None => orphaned.push(u),
            }
        }
        ShowReport {
            pools: pools.into_values().collect(),
            orphaned,
        }
    }

    /// `ipam check` data against the live pods and nodes.
    pub fn check(&self, pods: &[LivePod], nodes: &HashSet<String>) -> CheckReport {
        let mut r = CheckReport::default();
        // Leaks are exactly what GC would release with no grace period.
        let gc = self.gc(
            &GcInput {
                pods,
                nodes,
                now: UNIX_EPOCH,
                grace: Duration::ZERO,
            },
            &GcState::default(),
        );
        for h in gc.release {
            for a in h.addresses {
                let block = self
                    .blocks()
                    .find(|b| b.cidr().contains(&a))
                    .map(|b| b.cidr())
                    .expect("GC addresses come from blocks");
                let attr = self.address_owner(a);
                let allocated_to =
                    attr.and_then(|at| Some(format!("{}/{}", at.namespace()?, at.pod()?)));
                r.leaked.push(LeakedAddress {
                    address: a,
                    handle: h.handle.clone(),
                    block,
                    allocated_to,
                });
            }
        }
        r.leaked.sort_by_key(|l| l.address);

        // Blocks vs pools, and blocks vs each other (sorted by start, so one sweep finds overlaps).
        let mut reach: Option<(bool, u128, IpNet)> = None;
        let mut overlapping: Vec<(IpNet, IpNet)> = Vec::new();
        for (k, b) in self.entries() {
            let cidr = b.cidr();
            match self.pool_of(&cidr) {
                None => r.orphaned_blocks.push(cidr),
                Some(p) if p.block_size != cidr.prefix_len() => {
                    r.wrong_size_blocks
                        .push((cidr, p.name.clone(), p.block_size))
                }
                Some(_) => {}
            }
            let end = addr_to_u128(cidr.broadcast());
            if let Some((v6, reach_end, reach_cidr)) = reach
                && v6 == cidr.addr().is_ipv6()
                && addr_to_u128(cidr.network()) <= reach_end
            {
                overlapping.push((reach_cidr, cidr));
                if end > reach_end {
                    reach = Some((v6, end, cidr));
                }
                continue;
            }
            let _ = k;
            reach = Some((cidr.addr().is_ipv6(), end, cidr));
        }
        // Owners of each address: allocations in overlapping blocks, and pods reporting it.
        let mut owners: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
        for (a, b) in &overlapping {
            for cidr in [a, b] {
                let blk = self.block(cidr).expect("listed");
                for (o, at) in blk.allocations() {
                    let addr = blk.address(o);
                    if a.contains(&addr) && b.contains(&addr) {
                        owners.entry(addr).or_default().push(format!(
                            "{} in block {cidr}",
                            at.handle().unwrap_or("<no handle>")
                        ));
                    }
                }
            }
        }
        r.overlapping_blocks = overlapping;
        for p in pods {
            for ip in &p.ips {
                owners
                    .entry(*ip)
                    .or_default()
                    .push(format!("pod {}/{}", p.namespace, p.name));
                if !self.pools().any(|pl| pl.cidr.contains(ip)) {
                    r.in_use_outside_pools.push(*ip);
                } else if self.address_owner(*ip).is_none() {
                    r.in_use_unallocated.push(*ip);
                }
            }
        }
        r.duplicate_allocations = owners
            .into_iter()
            .filter_map(|(a, mut o)| {
                o.dedup();
                (o.iter().filter(|s| s.starts_with("pod ")).count() > 1
                    || o.iter().filter(|s| !s.starts_with("pod ")).count() > 1)
                    .then_some((a, o))
            })
            .collect();
        r.in_use_outside_pools.sort();
        r.in_use_unallocated.sort();
        r
    }
}

/// Go's `%.5g`, which calicoctl uses for address counts (e.g. `1.0486e+06`, `2048`).
pub fn format_g5(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let exp = v.abs().log10().floor() as i32;
    // Round to 5 significant digits first; rounding can bump the exponent (99999.9 → 1e+05).
    let sci = format!("{v:.4e}");
    let (mant, e) = sci.split_once('e').expect("{:e} has an exponent");
    let e: i32 = e.parse().expect("integer exponent");
    let exp = if e != exp { e } else { exp };
    if !(-4..5).contains(&exp) {
        let mant = trim_zeros(mant);
        let sign = if e < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", e.abs())
    } else {
        let decimals = (4 - exp).max(0) as usize;
        trim_zeros(&format!("{v:.decimals$}")).to_string()
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// calicoctl's `%.5g (%.f%%)` usage cell, e.g. `5 (8%)`.
pub fn format_usage(n: u128, total: u128) -> String {
    let pct = if total == 0 {
        0.0
    } else {
        n as f64 * 100.0 / total as f64
    };
    format!("{} ({pct:.0}%)", format_g5(n as f64))
}

impl ShowReport {
    /// The `ipam show` table (`--show-blocks` adds block rows under each pool).
    pub fn render(&self, show_blocks: bool) -> String {
        let mut rows: Vec<[String; 5]> = Vec::new();
        let row = |g: &str, cidr: String, total: u128, in_use: u128, free: u128| {
            [
                g.to_string(),
                cidr,
                format_g5(total as f64),
                format_usage(in_use, total),
                format_usage(free, total),
            ]
        };
        for p in &self.pools {
            rows.push(row(
                "IP Pool",
                p.cidr.to_string(),
                p.total,
                p.in_use,
                p.free,
            ));
            if show_blocks {
                for b in &p.blocks {
                    rows.push(row("Block", b.cidr.to_string(), b.total, b.in_use, b.free));
                }
            }
        }
        if show_blocks {
            for b in &self.orphaned {
                rows.push(row("Block", b.cidr.to_string(), b.total, b.in_use, b.free));
            }
        }
        let header = ["GROUPING", "CIDR", "IPS TOTAL", "IPS IN USE", "IPS FREE"].map(String::from);
        let mut widths = [0usize; 5];
        for r in std::iter::once(&header).chain(rows.iter()) {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.len());
            }
        }
        let sep: String = widths
            .iter()
            .fold("+".to_string(), |s, w| s + &"-".repeat(w + 2) + "+");
        let mut out = String::new();
        let line = |out: &mut String, r: &[String; 5]| {
            out.push('|');
            for (w, c) in widths.iter().zip(r) {
                let _ = write!(out, " {c:<w$} |");
            }
            out.push('\n');
        };
        let _ = writeln!(out, "{sep}");
        line(&mut out, &header);
        let _ = writeln!(out, "{sep}");
        for r in &rows {
            line(&mut out, r);
        }
        let _ = writeln!(out, "{sep}");
        out
    }
}
