//! Cross-object checks, reported by the operator as status conditions and Events.
use std::fmt;

use ipnet::IpNet;

use super::kinds::{is_v4, name_of, parse_cidr};
use crate::api;

/// A cross-object finding: two pools whose CIDRs overlap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolOverlap {
    /// First pool (by name order).
    pub a: String,
    /// Second pool.
    pub b: String,
}

impl fmt::Display for PoolOverlap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IPPool {:?} overlaps IPPool {:?}: pool CIDRs must not overlap",
            self.a, self.b
        )
    }
}

/// Pairs of pools whose CIDRs overlap (cross-object; reported by the operator as a condition).
/// Pools with unparsable CIDRs are skipped: single-object validation reports them.
pub fn pool_overlaps(pools: &[api::IPPool]) -> Vec<PoolOverlap> {
    let mut nets: Vec<(String, IpNet)> = pools
        .iter()
        .filter_map(|p| {
            Some((
                name_of(&p.metadata).to_string(),
                parse_cidr(&p.spec.cidr)?.trunc(),
            ))
        })
        .collect();
    nets.sort_by(|x, y| x.1.cmp(&y.1).then_with(|| x.0.cmp(&y.0)));
    let mut out = Vec::new();
    // Sorted by network then prefix: a pool can only overlap later pools that start inside it.
    for i in 0..nets.len() {
        for j in i + 1..nets.len() {
            if is_v4(&nets[i].1) != is_v4(&nets[j].1) || !nets[i].1.contains(&nets[j].1.network()) {
                break;
            }
            let (a, b) = if nets[i].0 <= nets[j].0 {
                (&nets[i].0, &nets[j].0)
            } else {
                (&nets[j].0, &nets[i].0)
            };
            out.push(PoolOverlap {
                a: a.clone(),
                b: b.clone(),
            });
        }
    }
    out.sort_by(|x, y| (&x.a, &x.b).cmp(&(&y.a, &y.b)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(name: &str, cidr: &str) -> api::IPPool {
        api::IPPool::new(
            name,
            api::IPPoolSpec {
                cidr: cidr.into(),
                ..Default::default()
            },
        )
    }

    #[test]
    fn pool_overlaps_reports_each_overlapping_pair_once_by_name() {
        let pools = [
            pool("default-ipv4-ippool", "198.19.16.0/21"),
            pool("external-pool", "198.19.24.0/21"),
            pool("inner", "198.19.17.0/24"),
            pool("wide", "198.19.0.0/16"),
            pool("v6", "fd00::/48"),
            pool("v6-inner", "fd00::/64"),
            pool("broken", "not-a-cidr"),
        ];
        let got: Vec<(String, String)> = pool_overlaps(&pools)
            .into_iter()
            .map(|o| (o.a, o.b))
            .collect();
        let want = [
            ("default-ipv4-ippool", "inner"),
            ("default-ipv4-ippool", "wide"),
            ("external-pool", "wide"),
            ("inner", "wide"),
            ("v6", "v6-inner"),
        ];
        assert_eq!(got, want.map(|(a, b)| (a.to_string(), b.to_string())));
        assert!(
            pool_overlaps(&pools[..2]).is_empty(),
            "the seed's two pools are disjoint"
        );
    }
}
