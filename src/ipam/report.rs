//! Data for `ipam show` and `ipam check`, with calicoctl's numbers and number formats (§6.7, §6.8).
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;

use super::gc::LivePod;
use super::{Attr, Block, Ipam, POD_HANDLE_PREFIX, addr_to_u128};

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
    /// Its handle, if the record has one.
    pub handle: Option<String>,
    /// Its block.
    pub block: IpNet,
    /// `namespace/pod` from its attributes, if any.
    pub allocated_to: Option<String>,
}

/// `ipam check` data. The first four lists are what calicoctl counts in "found N problems"; the
/// rest are Ocelot's extra findings, reported in a section of their own and not counted.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CheckReport {
    /// Allocated in IPAM but not in use (no grace period): no live pod reports the address, it is
    /// no existing node's tunnel address, and its pod (if the record names one) is gone. Records
    /// without pod attributes that are not tunnel addresses count, as calicoctl counts them.
    pub leaked: Vec<LeakedAddress>,
    /// Unallocated addresses live pods report that lie outside every enabled pool.
    pub in_use_outside_pools: Vec<IpAddr>,
    /// Unallocated addresses live pods report inside an enabled pool.
    pub in_use_unallocated: Vec<IpAddr>,
    /// IPAMHandle IDs (from Calico's handle objects; Ocelot writes none) with no allocation.
    pub handles_without_addresses: Vec<String>,
    /// IPAMHandle IDs that do have allocations.
    pub handles_with_addresses: usize,
    /// Blocks outside every pool.
    pub orphaned_blocks: Vec<IpNet>,
    /// Blocks whose `host:<node>` affinity names a node that does not exist: (block, node).
    pub blocks_of_missing_nodes: Vec<(IpNet, String)>,
    /// Pairs of blocks that overlap.
    pub overlapping_blocks: Vec<(IpNet, IpNet)>,
    /// Blocks of a pool whose prefix differs from the pool's blockSize: (block, pool, blockSize).
    pub wrong_size_blocks: Vec<(IpNet, String, u8)>,
    /// Addresses with more than one owner (allocated in two blocks, or reported by two pods).
    pub duplicate_allocations: Vec<(IpAddr, Vec<String>)>,
}

impl CheckReport {
    /// Number of problems, as calicoctl's last line counts them.
    pub fn problems(&self) -> usize {
        self.leaked.len()
            + self.in_use_outside_pools.len()
            + self.in_use_unallocated.len()
            + self.handles_without_addresses.len()
    }

    /// Number of Ocelot's extra findings (not part of [`CheckReport::problems`]).
    pub fn extra_findings(&self) -> usize {
        self.orphaned_blocks.len()
            + self.blocks_of_missing_nodes.len()
            + self.overlapping_blocks.len()
            + self.wrong_size_blocks.len()
            + self.duplicate_allocations.len()
    }

    /// calicoctl's closing line.
    pub fn summary(&self) -> String {
        format!("Check complete; found {} problems.", self.problems())
    }

    /// The report as text: calicoctl's count lines and closing line, then Ocelot's extra findings.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let w = &mut out;
        let _ = writeln!(
            w,
            "Found {} IPs that are allocated in IPAM but not actually in use.",
            self.leaked.len()
        );
        for l in &self.leaked {
            let _ = writeln!(
                w,
                "  {} leaked; handle {}, block {}{}",
                l.address,
                l.handle.as_deref().unwrap_or("<none>"),
                l.block,
                l.allocated_to
                    .as_deref()
                    .map_or(String::new(), |p| format!(", allocated to {p}"))
            );
        }
        let _ = writeln!(
            w,
            "Found {} in-use IPs that are not in active IP pools.",
            self.in_use_outside_pools.len()
        );
        let _ = writeln!(
            w,
            "Found {} in-use IPs that are in active IP pools but have no corresponding IPAM allocation.",
            self.in_use_unallocated.len()
        );
        let _ = writeln!(
            w,
            "Found {} handles with no matching IPs (and {} handles with matches).",
            self.handles_without_addresses.len(),
            self.handles_with_addresses
        );
        let _ = writeln!(w, "{}", self.summary());
        let _ = writeln!(w);
        let _ = writeln!(
            w,
            "Ocelot's additional findings ({}; not counted above):",
            self.extra_findings()
        );
        let _ = writeln!(
            w,
            "  {} blocks outside every IP pool",
            self.orphaned_blocks.len()
        );
        for b in &self.orphaned_blocks {
            let _ = writeln!(w, "    {b}");
        }
        let _ = writeln!(
            w,
            "  {} blocks affine to a node that does not exist",
            self.blocks_of_missing_nodes.len()
        );
        for (b, n) in &self.blocks_of_missing_nodes {
            let _ = writeln!(w, "    {b} (host:{n})");
        }
        let _ = writeln!(
            w,
            "  {} pairs of overlapping blocks",
            self.overlapping_blocks.len()
        );
        for (a, b) in &self.overlapping_blocks {
            let _ = writeln!(w, "    {a} overlaps {b}");
        }
        let _ = writeln!(
            w,
            "  {} blocks whose size differs from their pool's blockSize",
            self.wrong_size_blocks.len()
        );
        for (b, p, size) in &self.wrong_size_blocks {
            let _ = writeln!(w, "    {b} in pool {p} (blockSize {size})");
        }
        let _ = writeln!(
            w,
            "  {} IPs with more than one owner",
            self.duplicate_allocations.len()
        );
        for (a, owners) in &self.duplicate_allocations {
            let _ = writeln!(w, "    {a}: {}", owners.join("; "));
        }
        out
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

    /// `ipam check` data against the live pods and nodes, and the handle IDs of any IPAMHandle
    /// objects (Calico writes them; Ocelot does not, so pass none for an Ocelot-only cluster).
    pub fn check(
        &self,
        pods: &[LivePod],
        nodes: &HashSet<String>,
        handle_objects: &[String],
    ) -> CheckReport {
        let mut r = CheckReport::default();
        let live_ips: HashSet<IpAddr> = pods.iter().flat_map(|p| p.ips.iter().copied()).collect();
        let sandboxes: HashSet<&str> = pods
            .iter()
            .filter_map(|p| p.container_id.as_deref())
            .collect();
        let by_name: HashMap<(&str, &str), &LivePod> = pods
            .iter()
            .map(|p| ((p.namespace.as_str(), p.name.as_str()), p))
            .collect();
        let mut in_use_handles: HashSet<&str> = HashSet::new();
        for (_, b) in self.entries() {
            for (ord, a) in b.allocations() {
                let address = b.address(ord);
                if let Some(h) = a.handle() {
                    in_use_handles.insert(h);
                }
                if live_ips.contains(&address)
                    || self.allocation_in_use(b, a, nodes, &sandboxes, &by_name)
                {
                    continue;
                }
                r.leaked.push(LeakedAddress {
                    address,
                    handle: a.handle().map(str::to_string),
                    block: b.cidr(),
                    allocated_to: a.namespace().zip(a.pod()).map(|(n, p)| format!("{n}/{p}")),
                });
            }
        }
        r.leaked.sort_by_key(|l| l.address);
        for h in handle_objects {
            if in_use_handles.contains(h.as_str()) {
                r.handles_with_addresses += 1;
            } else {
                r.handles_without_addresses.push(h.clone());
            }
        }
        r.handles_without_addresses.sort();

        // Blocks vs pools, and blocks vs each other (sorted by start, so one sweep finds overlaps).
        let mut reach: Option<(bool, u128, IpNet)> = None;
        let mut overlapping: Vec<(IpNet, IpNet)> = Vec::new();
        for (k, b) in self.entries() {
            let cidr = b.cidr();
            if let Some(n) = b.node().filter(|n| !nodes.contains(*n)) {
                r.blocks_of_missing_nodes.push((cidr, n.to_string()));
            }
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
                // calicoctl: only addresses without an allocation, split by the enabled pools.
                if self.address_owner(*ip).is_some() {
                } else if self.pools().any(|pl| !pl.disabled && pl.cidr.contains(ip)) {
                    r.in_use_unallocated.push(*ip);
                } else {
                    r.in_use_outside_pools.push(*ip);
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
        r.in_use_outside_pools.dedup();
        r.in_use_unallocated.sort();
        r.in_use_unallocated.dedup();
        r
    }

    /// Whether an allocation nobody reports by address is still held: a tunnel address of an
    /// existing node, or a pod's whose sandbox is alive or whose pod exists on that node without
    /// having reported its sandbox or addresses yet (as GC decides). Anything else is a leak.
    fn allocation_in_use(
        &self,
        b: &Block,
        a: &Attr,
        nodes: &HashSet<String>,
        sandboxes: &HashSet<&str>,
        by_name: &HashMap<(&str, &str), &LivePod>,
    ) -> bool {
        let node = a.node().or(b.node());
        if let Some(tn) = a.handle().and_then(Ipam::tunnel_node) {
            return nodes.contains(tn);
        }
        if a.kind().is_some_and(|t| t.ends_with("TunnelAddress")) {
            return node.is_some_and(|n| nodes.contains(n));
        }
        let (Some(ns), Some(pod)) = (a.namespace(), a.pod()) else {
            return false;
        };
        let sandbox = a
            .handle()
            .and_then(|h| h.strip_prefix(POD_HANDLE_PREFIX))
            .is_some_and(|c| sandboxes.contains(c));
        sandbox
            || by_name.get(&(ns, pod)).is_some_and(|p| {
                node.is_none_or(|n| n == p.node) && p.container_id.is_none() && p.ips.is_empty()
            })
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
        let line = |out: &mut String, r: &[String; 5], heading: bool| {
            out.push('|');
            for (w, c) in widths.iter().zip(r) {
                let _ = if heading {
                    // tablewriter's Pad: centred, the odd space on the right.
                    let left = (w - c.len()) / 2;
                    write!(out, " {:left$}{c:<rest$} |", "", rest = w - left)
                } else if is_tablewriter_number(c) {
                    write!(out, " {c:>w$} |")
                } else {
                    write!(out, " {c:<w$} |")
                };
            }
            out.push('\n');
        };
        let _ = writeln!(out, "{sep}");
        line(&mut out, &header, true);
        let _ = writeln!(out, "{sep}");
        for r in &rows {
            line(&mut out, r, false);
        }
        let _ = writeln!(out, "{sep}");
        out
    }
}

/// calicoctl prints its tables with olekukonko/tablewriter, whose default alignment puts a cell on
/// the right when it matches `^-?(?:\d{1,3}(?:,\d{3})*|\d+)(?:\.\d+)?$` (a plain decimal), and on the
/// left otherwise: so `2048` is right-aligned, `1.0486e+06` and `5 (8%)` are not.
fn is_tablewriter_number(cell: &str) -> bool {
    let s = cell.trim();
    let s = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let grouped = || {
        let mut groups = int.split(',');
        let first = groups.next().unwrap_or("");
        (1..=3).contains(&first.len()) && digits(first) && groups.all(|g| g.len() == 3 && digits(g))
    };
    (digits(int) || grouped()) && frac.is_none_or(digits)
}
