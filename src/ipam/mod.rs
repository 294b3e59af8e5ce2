//! IPAM engine: pools, blocks, affinities, assignment, release, group commit and GC decisions.
//!
//! Pure and synchronous: callers pass objects read from the API and the current time in, and get back
//! decisions and the exact block writes to make. The same engine serves the operator (claims blocks,
//! decides GC) and the agent (assigns addresses from its node's blocks, commits them in groups).
//! Behaviour follows Calico's libcalico-go IPAM (reference/calico-semantics.md §6).
pub mod block;
pub mod engine;
pub mod error;
pub mod gc;
pub mod pool;
pub mod report;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use block::{Attr, Block, affinity_name, block_name, host_affinity};
pub use engine::{
    AssignKind, AssignRequest, Assignment, BlockWrite, Claim, CommitTicket, Durability, Ipam,
    IpamConfig, Op, OpKind, WriteKind,
};
pub use error::{IpamError, PoolSource};
pub use gc::{
    FreeBlock, FreeReason, GcDecision, GcInput, GcState, LeakReason, LivePod, ReleaseHandle,
};
pub use pool::{
    ANNOTATION_IP_ADDRS, ANNOTATION_IPV4_POOLS, ANNOTATION_IPV6_POOLS, FamilyPools, PodContext,
    Pool, PoolSelection, check_annotations,
};
pub use report::{BlockUsage, CheckReport, PoolUsage, ShowReport};

/// Calico's block limit per host when IPAMConfiguration maxBlocksPerHost is 0.
pub const DEFAULT_MAX_BLOCKS_PER_HOST: u32 = 20;
/// Calico kube-controllers' default leakGracePeriod.
pub const DEFAULT_LEAK_GRACE: Duration = Duration::from_secs(15 * 60);
/// Handle prefix of pod allocations: `<netconf name>.<containerID>` with Calico's netconf name.
pub const POD_HANDLE_PREFIX: &str = "k8s-pod-network.";
/// Handle prefix of WireGuard interface addresses.
pub const WIREGUARD_HANDLE_PREFIX: &str = "wireguard-tunnel-addr-";
/// Handle prefix of IPIP tunnel addresses.
pub const IPIP_HANDLE_PREFIX: &str = "ipip-tunnel-addr-";
/// Handle prefix of VXLAN tunnel addresses.
pub const VXLAN_HANDLE_PREFIX: &str = "vxlan-tunnel-addr-";

/// The handle of a pod sandbox's allocation.
pub fn pod_handle(container_id: &str) -> String {
    format!("{POD_HANDLE_PREFIX}{container_id}")
}

/// The handle of a node's WireGuard interface address.
pub fn wireguard_handle(node: &str) -> String {
    format!("{WIREGUARD_HANDLE_PREFIX}{node}")
}

/// Address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// Family of an address.
    pub fn of(a: &IpAddr) -> Family {
        if a.is_ipv4() { Family::V4 } else { Family::V6 }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

pub(crate) fn addr_to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

pub(crate) fn u128_to_addr(v: u128, f: Family) -> IpAddr {
    match f {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(v as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(v)),
    }
}

/// FNV-1 32-bit, the hash Calico seeds its block walk with (Go's hash/fnv New32).
pub fn fnv32(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h = h.wrapping_mul(0x0100_0193);
        h ^= u32::from(b);
    }
    h
}

/// UTC RFC 3339 with seconds (what Calico writes for timestamps); times before 1970 print as the epoch.
pub fn rfc3339(t: SystemTime) -> String {
    rfc3339_secs(unix_secs(t))
}

/// Whole seconds since the epoch; times before 1970 count as the epoch.
pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// [`rfc3339`] of a count of seconds since the epoch.
pub(crate) fn rfc3339_secs(secs: u64) -> String {
    let secs = secs.min(i64::MAX as u64) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The seconds of a timestamp in exactly the form [`rfc3339_secs`] prints (so storing the number
/// and printing it again gives back the same text); None for any other text.
pub(crate) fn parse_rfc3339_secs(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || b[19] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        b[r].iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = y - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()?;
    // Rejects impossible dates (Feb 30) that the arithmetic above would roll over.
    (rfc3339_secs(secs) == s).then_some(secs)
}

/// Nanoseconds since the epoch, Calico's starting sequence number for a new block.
pub(crate) fn unix_nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos().min(i64::MAX as u128) as i64)
}

#[cfg(test)]
mod tests;
