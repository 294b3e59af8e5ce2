use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::api::ippool::IPPoolSpec;
use crate::ipam::{AssignRequest, Family, IpamConfig};

const KEY_A: &str = "Gx7A7Sf27JT3H5S11wciL6PTpGwSloipBGhjzKGTsw0=";
const KEY_B: &str = "Q+U8h6+xbx11Qbxx/qqvGAiztIL/nFoS5zG0SGeB7FY=";

fn pool(name: &str, cidr: &str, created_s: i64) -> IPPool {
    let mut p = IPPool::new(
        name,
        IPPoolSpec {
            cidr: cidr.into(),
            ..Default::default()
        },
    );
    let t = jiff::Timestamp::from_second(1_700_000_000 + created_s).unwrap();
    p.metadata.creation_timestamp = Some(Time(t));
    p
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_764_000_000)
}

fn seed_ipam() -> Ipam {
    let mut ipam = Ipam::new(IpamConfig::default());
    let default = pool("default-ipv4-ippool", "198.19.16.0/21", 0);
    ipam.upsert_pool("default-ipv4-ippool", &default.spec)
        .unwrap();
    let mut ext = pool("external-pool", "198.19.28.208/29", 1).spec;
    ext.block_size = Some(29);
    ext.node_selector = Some("!all()".into());
    ipam.upsert_pool("external-pool", &ext).unwrap();
    ipam
}

fn commit_all(ipam: &mut Ipam) {
    for w in ipam.prepare_commit() {
        ipam.commit_succeeded(&w.cidr, w.sequence).unwrap();
    }
}

#[test]
fn later_overlapping_pool_is_refused_and_the_first_keeps_its_cidr() {
    let v = pool_verdicts(&[
        pool("b-newer", "198.19.16.0/24", 10),
        pool("a-older", "198.19.16.0/21", 0),
        pool("apart", "198.19.40.0/24", 20),
    ]);
    assert!(v["a-older"].allocatable);
    assert_eq!(v["b-newer"].reason, pool_reason::CIDR_OVERLAP);
    assert!(!v["b-newer"].allocatable);
    assert!(
        v["b-newer"].message.contains("\"a-older\"") && v["b-newer"].message.contains("spec.cidr"),
        "{}",
        v["b-newer"].message
    );
    assert!(v["apart"].allocatable);
}

#[test]
fn disabled_pool_is_valid_but_not_allocatable_and_still_blocks_overlaps() {
    let mut d = pool("disabled", "198.19.16.0/21", 0);
    d.spec.disabled = true;
    let v = pool_verdicts(&[d, pool("later", "198.19.17.0/24", 5)]);
    assert_eq!(v["disabled"].reason, pool_reason::DISABLED);
    assert!(v["disabled"].is_valid() && !v["disabled"].allocatable);
    assert_eq!(v["later"].reason, pool_reason::CIDR_OVERLAP);
}

#[test]
fn invalid_spec_is_named_with_its_rule() {
    let mut p = pool("bad", "198.19.16.0/21", 0);
    p.spec.block_size = Some(33);
    let v = pool_verdicts(&[p]);
    assert_eq!(v["bad"].reason, pool_reason::INVALID);
    assert!(
        v["bad"].message.contains("blockSize"),
        "{}",
        v["bad"].message
    );
}

#[test]
fn a_joining_node_claims_one_block_per_selecting_pool_and_no_more() {
    let mut ipam = seed_ipam();
    let labels = BTreeMap::new();
    // external-pool selects no node (`!all()`): only the default pool on join.
    assert_eq!(
        claims_needed(&ipam, "node1", &labels, &[]),
        ["default-ipv4-ippool"]
    );
    let claim = ipam
        .claim_block("node1", "default-ipv4-ippool", now())
        .unwrap();
    assert_eq!(
        claim.cidr.to_string(),
        "198.19.22.128/26",
        "the seed's block"
    );
    commit_all(&mut ipam);
    assert!(claims_needed(&ipam, "node1", &labels, &[]).is_empty());
}

#[test]
fn demand_claims_from_a_pool_selecting_no_node_until_a_block_has_room() {
    let mut ipam = seed_ipam();
    let labels = BTreeMap::new();
    let demand = vec!["external-pool".to_string(), "no-such-pool".to_string()];
    let want = claims_needed(&ipam, "node1", &labels, &demand);
    assert_eq!(want, ["default-ipv4-ippool", "external-pool"]);
    for p in &want {
        ipam.claim_block("node1", p, now()).unwrap();
    }
    commit_all(&mut ipam);
    assert!(claims_needed(&ipam, "node1", &labels, &demand).is_empty());
    let ext = ipam
        .node_blocks("node1")
        .into_iter()
        .find(|b| b.prefix_len() == 29)
        .unwrap();
    assert_eq!(
        ext.to_string(),
        "198.19.28.208/29",
        "the seed's external block"
    );
    // The /29 fills up: the same demand now asks for another block of that pool.
    for i in 0..8 {
        let req = AssignRequest::pod(&format!("id{i}"), "external-ns", "p", "node1", now());
        let pools = crate::ipam::FamilyPools {
            pools: vec!["external-pool".into()],
            source: crate::ipam::PoolSource::NamespaceAnnotation,
        };
        ipam.auto_assign(&req, Family::V4, &pools).unwrap();
    }
    assert_eq!(
        claims_needed(&ipam, "node1", &labels, &demand),
        ["external-pool"]
    );
}

#[test]
fn wireguard_address_comes_after_the_pods_in_the_nodes_block_and_goes_when_disabled() {
    let mut ipam = seed_ipam();
    assert_eq!(
        wireguard_address(&ipam, "node1", true),
        TunnelAddress::Keep(None),
        "no block yet: nothing to assign from"
    );
    ipam.claim_block("node1", "default-ipv4-ippool", now())
        .unwrap();
    commit_all(&mut ipam);
    let pools = ipam.tunnel_pools(Family::V4, &BTreeMap::new());
    for i in 0..3 {
        let req = AssignRequest::pod(&format!("pod{i}"), "default", "web", "node1", now());
        ipam.auto_assign(&req, Family::V4, &pools).unwrap();
    }
    assert_eq!(
        wireguard_address(&ipam, "node1", true),
        TunnelAddress::Assign
    );
    let a = ipam
        .auto_assign(
            &AssignRequest::wireguard("node1", now()),
            Family::V4,
            &pools,
        )
        .unwrap();
    assert_eq!(
        a.address.to_string(),
        "198.19.22.131",
        "the seed's wireguard.cali"
    );
    assert_eq!(
        wireguard_address(&ipam, "node1", true),
        TunnelAddress::Keep(Some("198.19.22.131".parse().unwrap()))
    );
    assert_eq!(
        wireguard_address(&ipam, "node1", false),
        TunnelAddress::Release(vec![a.address])
    );
}

#[test]
fn vxlan_address_comes_from_a_selecting_vxlan_pool_and_goes_with_it() {
    let mut ipam = seed_ipam();
    let mut pools: BTreeMap<String, IPPool> = BTreeMap::new();
    let mut default = pool("default-ipv4-ippool", "198.19.16.0/21", 0);
    pools.insert(default.metadata.name.clone().unwrap(), default.clone());
    let labels = BTreeMap::new();
    assert!(
        vxlan_pools(&ipam, &pools, &labels).pools.is_empty(),
        "vxlanMode unset is Never"
    );
    default.spec.vxlan_mode = Some(EncapMode::CrossSubnet);
    pools.insert("default-ipv4-ippool".into(), default);
    let vp = vxlan_pools(&ipam, &pools, &labels);
    assert_eq!(
        vp.pools,
        ["default-ipv4-ippool"],
        "external-pool selects no node"
    );
    ipam.claim_block("node1", "default-ipv4-ippool", now())
        .unwrap();
    commit_all(&mut ipam);
    assert_eq!(vxlan_address(&ipam, "node1", true), TunnelAddress::Assign);
    let a = ipam
        .auto_assign(&AssignRequest::vxlan("node1", now()), Family::V4, &vp)
        .unwrap();
    assert_eq!(
        a.address.to_string(),
        "198.19.22.128",
        "the block's first address"
    );
    assert_eq!(
        ipam.handle_addresses("vxlan-tunnel-addr-node1"),
        vec![a.address],
        "Calico's handle"
    );
    assert_eq!(
        vxlan_address(&ipam, "node1", true),
        TunnelAddress::Keep(Some("198.19.22.128".parse().unwrap()))
    );
    assert_eq!(
        vxlan_address(&ipam, "node1", false),
        TunnelAddress::Release(vec![a.address])
    );
}

#[test]
fn node_address_from_internal_ip() {
    let addrs = [("Hostname", "node1"), ("InternalIP", "198.19.0.2")];
    let ip = internal_ipv4(addrs).unwrap();
    assert_eq!(node_bgp_address(ip, 20), "198.19.0.2/20");
    assert_eq!(internal_ipv4([("ExternalIP", "203.0.113.1")]), None);
}

#[test]
fn a_duplicate_key_is_refused_for_the_newcomer_and_the_publisher_keeps_it() {
    let reported: BTreeMap<String, String> = [
        ("node1".to_string(), KEY_A.to_string()),
        ("node2".to_string(), KEY_A.to_string()),
        ("control".to_string(), KEY_B.to_string()),
    ]
    .into();
    // node2 published KEY_A first: node1, alphabetically earlier, must not take it.
    let already: BTreeMap<String, String> = [("node2".to_string(), KEY_A.to_string())].into();
    let (published, refused) = published_keys(&reported, &already);
    assert_eq!(published.get("node2").map(String::as_str), Some(KEY_A));
    assert_eq!(published.get("control").map(String::as_str), Some(KEY_B));
    assert!(
        matches!(refused.get("node1"), Some(KeyProblem::Duplicate { others, .. }) if others == &["node2"])
    );
    // Nothing published yet: name order decides, the same on every run.
    let (p2, r2) = published_keys(&reported, &BTreeMap::new());
    assert!(p2.contains_key("node1") && r2.contains_key("node2"));
    let bad: BTreeMap<String, String> = [("x".to_string(), "not-base64".to_string())].into();
    assert!(matches!(
        published_keys(&bad, &BTreeMap::new()).1.get("x"),
        Some(KeyProblem::Invalid { .. })
    ));
}

#[test]
fn namespace_annotation_problems_name_namespace_annotation_and_pool() {
    let ipam = seed_ipam();
    let ann = |v: &str| -> BTreeMap<String, String> {
        [("cni.projectcalico.org/ipv4pools".to_string(), v.to_string())].into()
    };
    assert!(namespace_pool_problems("external-ns", &ann(r#"["external-pool"]"#), &ipam).is_empty());
    assert!(
        namespace_pool_problems("a", &ann(r#"["198.19.16.0/21"]"#), &ipam).is_empty(),
        "by CIDR"
    );
    let missing = namespace_pool_problems("external-ns", &ann(r#"["no-such-pool"]"#), &ipam);
    assert_eq!(missing.len(), 1);
    assert!(
        missing[0].contains("\"external-ns\"")
            && missing[0].contains("cni.projectcalico.org/ipv4pools")
            && missing[0].contains("no-such-pool"),
        "{missing:?}"
    );
    let bad = namespace_pool_problems("b", &ann("external-pool"), &ipam);
    assert!(
        bad.len() == 1 && bad[0].contains("\"b\""),
        "not JSON: {bad:?}"
    );
    assert!(namespace_pool_problems("c", &BTreeMap::new(), &ipam).is_empty());
}

#[test]
fn cluster_information_is_written_once_and_keeps_its_guid() {
    let first = cluster_information(None, || "abc123".into()).expect("absent: write it");
    assert_eq!(first.datastore_ready, Some(true));
    assert_eq!(first.cluster_guid.as_deref(), Some("abc123"));
    assert_eq!(
        cluster_information(Some(&first), || unreachable!("guid kept")),
        None,
        "current: no write"
    );
    let mut stale = first.clone();
    stale.datastore_ready = Some(false);
    let fixed = cluster_information(Some(&stale), || unreachable!("guid kept")).unwrap();
    assert_eq!(
        (fixed.cluster_guid.as_deref(), fixed.datastore_ready),
        (Some("abc123"), Some(true))
    );
}
