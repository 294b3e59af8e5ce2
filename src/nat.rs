//! natOutgoing as one nftables table owned by Ocelot, `table ip ocelot-nat`.
//!
//! Calico's rule (felix/rules/nat.go, §8 of the semantics reference): traffic whose source is in a
//! natOutgoing pool and whose destination is outside every pool is MASQUERADEd (Felix adds
//! `--random-fully` where iptables has it; nftables always has `fully-random`). Traffic between
//! pods of any pools — including this node's own — is never NATed. Disabled pools count in both
//! sets: Felix is not told about `disabled`.
//!
//! [`NatPlan::script`] is the input of one `nft -f -` transaction that replaces the whole table
//! atomically (or removes it when no pool has natOutgoing); no other table is named, so other
//! tables are never touched. [`NatPlan::matches_listing`] compares the table in the kernel
//! (`nft -j list table ip ocelot-nat`) with the plan, so a restarted agent adopts an unchanged
//! table instead of rewriting it.
//!
//! IPv4 only, as the rest of the node: IPv6 pools are listed in [`NatPlan::ipv6_skipped`].
use ipnet::{IpNet, Ipv4Net};
use serde_json::{Value, json};

/// The table's family and name: `table ip ocelot-nat`.
pub const FAMILY: &str = "ip";
pub const TABLE: &str = "ocelot-nat";
/// Sources that are masqueraded (pools with natOutgoing).
pub const MASQ_SET: &str = "masq-pools";
/// Destinations that are never masqueraded (every pool).
pub const ALL_SET: &str = "all-pools";
pub const CHAIN: &str = "postrouting";
/// The chain's hook priority: `srcnat`, which nft lists as 100.
const SRCNAT_PRIORITY: i64 = 100;

/// Why a NAT plan could not be made, or a listing read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NatError {
    #[error("{field} entry {cidr:?} is not a CIDR: {error}")]
    BadCidr {
        field: &'static str,
        cidr: String,
        error: String,
    },
    #[error("`nft -j list table {FAMILY} {TABLE}` printed no nftables JSON: {0}")]
    BadListing(String),
}

impl NatError {
    /// A stable reason for a status condition.
    pub fn reason(&self) -> &'static str {
        match self {
            NatError::BadCidr { .. } => "InvalidPoolCIDR",
            NatError::BadListing(_) => "NftListingUnreadable",
        }
    }
}

/// What the node's NAT table holds: sorted, merged IPv4 networks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NatPlan {
    /// Sources to masquerade.
    pub masq: Vec<Ipv4Net>,
    /// Destinations never masqueraded (every pool, the masqueraded ones included).
    pub all: Vec<Ipv4Net>,
    /// IPv6 pools with natOutgoing, which this IPv4 table does not cover.
    pub ipv6_skipped: Vec<String>,
}

fn parse(field: &'static str, cidrs: &[String]) -> Result<(Vec<Ipv4Net>, Vec<String>), NatError> {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for c in cidrs {
        match c.trim().parse::<IpNet>() {
            Ok(IpNet::V4(n)) => v4.push(n.trunc()),
            Ok(IpNet::V6(n)) => v6.push(n.trunc().to_string()),
            Err(e) => {
                return Err(NatError::BadCidr {
                    field,
                    cidr: c.clone(),
                    error: e.to_string(),
                });
            }
        }
    }
    v6.sort();
    v6.dedup();
    Ok((v4, v6))
}

impl NatPlan {
    /// The plan for a node's `natOutgoingPools` and `allPools` (NodeNetworkState spec). Networks
    /// are merged (an interval set refuses overlapping elements) and sorted.
    pub fn new(nat_outgoing_pools: &[String], all_pools: &[String]) -> Result<NatPlan, NatError> {
        let (masq, ipv6_skipped) = parse("natOutgoingPools", nat_outgoing_pools)?;
        let (mut all, _) = parse("allPools", all_pools)?;
        all.extend(&masq);
        Ok(NatPlan {
            masq: Ipv4Net::aggregate(&masq),
            all: Ipv4Net::aggregate(&all),
            ipv6_skipped,
        })
    }

    /// The plan of a NodeNetworkState spec.
    pub fn from_spec(spec: &crate::api::nodestate::NodeNetworkStateSpec) -> Result<Self, NatError> {
        NatPlan::new(&spec.nat_outgoing_pools, &spec.all_pools)
    }

    /// Whether the table exists at all: only when some pool has natOutgoing.
    pub fn needed(&self) -> bool {
        !self.masq.is_empty()
    }

    /// The `nft -f -` input: one transaction that creates the table if absent (so the delete
    /// cannot fail), deletes it, and, when needed, writes it anew.
    pub fn script(&self) -> String {
        let mut s = format!("table {FAMILY} {TABLE} {{}}\ndelete table {FAMILY} {TABLE}\n");
        if !self.needed() {
            return s;
        }
        s.push_str(&format!("table {FAMILY} {TABLE} {{\n"));
        for (name, nets) in [(MASQ_SET, &self.masq), (ALL_SET, &self.all)] {
            let elems: Vec<String> = nets.iter().map(Ipv4Net::to_string).collect();
            s.push_str(&format!(
                "\tset {name} {{\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = {{ {} }}\n\t}}\n",
                elems.join(", ")
            ));
        }
        s.push_str(&format!(
            "\tchain {CHAIN} {{\n\
             \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
             \t\tip saddr @{MASQ_SET} ip daddr != @{ALL_SET} masquerade fully-random\n\
             \t}}\n}}\n"
        ));
        s
    }

    /// The table as `nft -j list table` shows it, without handles and metainfo; None when the
    /// table should not exist.
    pub fn expected_listing(&self) -> Option<Vec<Value>> {
        if !self.needed() {
            return None;
        }
        let elem = |n: &Ipv4Net| -> Value {
            if n.prefix_len() == 32 {
                json!(n.addr().to_string())
            } else {
                json!({"prefix": {"addr": n.addr().to_string(), "len": n.prefix_len()}})
            }
        };
        let set = |name: &str, nets: &[Ipv4Net]| {
            json!({"set": {
                "family": FAMILY, "name": name, "table": TABLE, "type": "ipv4_addr",
                "flags": ["interval"], "elem": nets.iter().map(elem).collect::<Vec<_>>(),
            }})
        };
        let addr = |field: &str, op: &str, set: &str| {
            json!({"match": {"op": op, "left": {"payload": {"protocol": "ip", "field": field}},
                             "right": format!("@{set}")}})
        };
        Some(vec![
            json!({"table": {"family": FAMILY, "name": TABLE}}),
            set(MASQ_SET, &self.masq),
            set(ALL_SET, &self.all),
            json!({"chain": {"family": FAMILY, "table": TABLE, "name": CHAIN, "type": "nat",
                             "hook": "postrouting", "prio": SRCNAT_PRIORITY, "policy": "accept"}}),
            json!({"rule": {"family": FAMILY, "table": TABLE, "chain": CHAIN, "expr": [
                addr("saddr", "==", MASQ_SET),
                addr("daddr", "!=", ALL_SET),
                {"masquerade": {"flags": "fully-random"}},
            ]}}),
        ])
    }

    /// Whether the kernel's table is this plan: `listing` is the output of
    /// `nft -j list table ip ocelot-nat`, None when the table does not exist.
    pub fn matches_listing(&self, listing: Option<&str>) -> Result<bool, NatError> {
        let got = listing.map(normalize_listing).transpose()?;
        Ok(got == self.expected_listing())
    }

    /// One line for logs and the NAT condition.
    pub fn summary(&self) -> String {
        let list = |n: &[Ipv4Net]| {
            n.iter()
                .map(Ipv4Net::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !self.needed() {
            return format!("no natOutgoing pool: table {FAMILY} {TABLE} absent");
        }
        let mut s = format!(
            "table {FAMILY} {TABLE} masquerades {} to destinations outside {}",
            list(&self.masq),
            list(&self.all)
        );
        if !self.ipv6_skipped.is_empty() {
            s.push_str(&format!(
                "; IPv6 pools not masqueraded (IPv4 only): {}",
                self.ipv6_skipped.join(", ")
            ));
        }
        s
    }
}

/// The objects of an `nft -j list …` output without `metainfo` and without handles, which the
/// kernel assigns anew on every write.
pub fn normalize_listing(listing: &str) -> Result<Vec<Value>, NatError> {
    let v: Value =
        serde_json::from_str(listing).map_err(|e| NatError::BadListing(e.to_string()))?;
    let items = v
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or_else(|| NatError::BadListing("no \"nftables\" array".into()))?;
    Ok(items
        .iter()
        .filter(|o| o.get("metainfo").is_none())
        .map(|o| {
            let mut o = o.clone();
            if let Some(obj) = o.as_object_mut() {
                for inner in obj.values_mut() {
                    if let Some(m) = inner.as_object_mut() {
                        m.remove("handle");
                    }
                }
            }
            o
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    /// What nft 1.0.6 prints for the seed's plan after `nft -f` of its script (captured).
    const SEED_LISTING: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "ip", "name": "ocelot-nat", "handle": 2}}, {"set": {"family": "ip", "name": "masq-pools", "table": "ocelot-nat", "type": "ipv4_addr", "handle": 2, "flags": ["interval"], "elem": [{"prefix": {"addr": "198.19.16.0", "len": 21}}]}}, {"set": {"family": "ip", "name": "all-pools", "table": "ocelot-nat", "type": "ipv4_addr", "handle": 3, "flags": ["interval"], "elem": ["10.0.0.1", {"prefix": {"addr": "198.19.16.0", "len": 21}}, {"prefix": {"addr": "198.19.26.0", "len": 23}}]}}, {"chain": {"family": "ip", "table": "ocelot-nat", "name": "postrouting", "handle": 1, "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}}, {"rule": {"family": "ip", "table": "ocelot-nat", "chain": "postrouting", "handle": 4, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "@masq-pools"}}, {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "@all-pools"}}, {"masquerade": {"flags": "fully-random"}}]}}]}"#;

    fn seed_plan() -> NatPlan {
        NatPlan::new(
            &s(&["198.19.16.0/21"]),
            &s(&["198.19.26.0/23", "10.0.0.1/32", "198.19.16.0/21"]),
        )
        .unwrap()
    }

    #[test]
    fn the_script_replaces_the_whole_table_in_one_transaction() {
        assert_eq!(
            seed_plan().script(),
            "table ip ocelot-nat {}\n\
             delete table ip ocelot-nat\n\
             table ip ocelot-nat {\n\
             \tset masq-pools {\n\
             \t\ttype ipv4_addr\n\
             \t\tflags interval\n\
             \t\telements = { 198.19.16.0/21 }\n\
             \t}\n\
             \tset all-pools {\n\
             \t\ttype ipv4_addr\n\
             \t\tflags interval\n\
             \t\telements = { 10.0.0.1/32, 198.19.16.0/21, 198.19.26.0/23 }\n\
             \t}\n\
             \tchain postrouting {\n\
             \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
             \t\tip saddr @masq-pools ip daddr != @all-pools masquerade fully-random\n\
             \t}\n\
             }\n"
        );
    }

    #[test]
    fn no_natoutgoing_pool_removes_the_table() {
        let p = NatPlan::new(&[], &s(&["198.19.16.0/21"])).unwrap();
        assert!(!p.needed());
        assert_eq!(
            p.script(),
            "table ip ocelot-nat {}\ndelete table ip ocelot-nat\n"
        );
        assert_eq!(p.expected_listing(), None);
        assert!(p.matches_listing(None).unwrap());
        assert!(!p.matches_listing(Some(SEED_LISTING)).unwrap());
        assert_eq!(
            p.summary(),
            "no natOutgoing pool: table ip ocelot-nat absent"
        );
    }

    #[test]
    fn rendering_is_sorted_merged_and_independent_of_input_order() {
        let a = NatPlan::new(
            &s(&["198.19.24.0/21", "198.19.16.0/21"]),
            &s(&["198.19.16.0/21", "198.19.24.0/21", "198.19.16.0/22"]),
        )
        .unwrap();
        let b = NatPlan::new(
            &s(&["198.19.16.0/21", "198.19.24.0/21", "198.19.24.0/21"]),
            &s(&["198.19.24.0/21", "198.19.16.0/21"]),
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.script(), b.script());
        // Adjacent and overlapping networks become one element: interval sets refuse overlaps.
        assert_eq!(a.masq, vec!["198.19.16.0/20".parse::<Ipv4Net>().unwrap()]);
        assert_eq!(a.all, a.masq);
    }

    #[test]
    fn a_masqueraded_pool_is_never_a_masqueraded_destination() {
        // Even when the all-pools list misses it, pod-to-pod traffic of a NAT pool stays un-NATed.
        let p = NatPlan::new(&s(&["198.19.16.0/21"]), &s(&["10.1.0.0/16"])).unwrap();
        assert_eq!(
            p.all,
            vec![
                "10.1.0.0/16".parse::<Ipv4Net>().unwrap(),
                "198.19.16.0/21".parse().unwrap()
            ]
        );
    }

    #[test]
    fn host_bits_are_dropped() {
        let p = NatPlan::new(&s(&["198.19.16.7/21"]), &s(&[])).unwrap();
        assert_eq!(p.masq, vec!["198.19.16.0/21".parse::<Ipv4Net>().unwrap()]);
    }

    #[test]
    fn a_bad_cidr_fails_with_a_stable_reason() {
        let e = NatPlan::new(&s(&["198.19.16.0/21"]), &s(&["10.0.0.0/33"])).unwrap_err();
        assert_eq!(e.reason(), "InvalidPoolCIDR");
        assert_eq!(
            e.to_string(),
            "allPools entry \"10.0.0.0/33\" is not a CIDR: invalid IP address syntax"
        );
        let e = NatPlan::new(&s(&["pool-a"]), &[]).unwrap_err();
        assert_eq!(e.reason(), "InvalidPoolCIDR");
        assert!(
            e.to_string()
                .starts_with("natOutgoingPools entry \"pool-a\"")
        );
    }

    #[test]
    fn ipv6_pools_are_reported_not_rendered() {
        let p = NatPlan::new(
            &s(&["fd00:1::/64", "198.19.16.0/21"]),
            &s(&["fd00:1::/64", "198.19.16.0/21"]),
        )
        .unwrap();
        assert_eq!(p.ipv6_skipped, ["fd00:1::/64"]);
        assert!(!p.script().contains("fd00"));
        assert_eq!(
            p.summary(),
            "table ip ocelot-nat masquerades 198.19.16.0/21 to destinations outside \
             198.19.16.0/21; IPv6 pools not masqueraded (IPv4 only): fd00:1::/64"
        );
        let only6 = NatPlan::new(&s(&["fd00:1::/64"]), &[]).unwrap();
        assert!(!only6.needed());
    }

    #[test]
    fn the_kernels_listing_of_the_same_table_is_adopted() {
        let p = seed_plan();
        assert!(p.matches_listing(Some(SEED_LISTING)).unwrap());
        // Absent, or another pool set, or an extra rule: not the plan.
        assert!(!p.matches_listing(None).unwrap());
        let other = SEED_LISTING.replace("\"len\": 23", "\"len\": 24");
        assert!(!p.matches_listing(Some(&other)).unwrap());
        let extra = format!(
            "{}, {{\"rule\": {{\"family\": \"ip\", \"table\": \"ocelot-nat\", \"chain\": \
             \"postrouting\", \"handle\": 5, \"expr\": [{{\"accept\": null}}]}}}}]}}",
            SEED_LISTING.strip_suffix("]}").unwrap()
        );
        assert!(normalize_listing(&extra).is_ok(), "{extra}");
        assert!(!p.matches_listing(Some(&extra)).unwrap());
    }

    #[test]
    fn an_unreadable_listing_is_an_error() {
        let e = seed_plan()
            .matches_listing(Some("table ip x {}"))
            .unwrap_err();
        assert_eq!(e.reason(), "NftListingUnreadable");
        let e = seed_plan().matches_listing(Some("{}")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`nft -j list table ip ocelot-nat` printed no nftables JSON: no \"nftables\" array"
        );
    }
}
