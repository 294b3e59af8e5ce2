//! Unit tests: the seed lab's cases, the CRD mapping, pool selection, group commit, GC and reports.
use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;

use super::engine::affinity_spec;
use super::report::{format_g5, format_usage};
use super::*;
use crate::api::ipam::IPAMBlockSpec;
use crate::api::ippool::IPPoolSpec;

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn pool(cidr: &str, block_size: Option<i32>, selector: &str) -> IPPoolSpec {
    IPPoolSpec {
        cidr: cidr.into(),
        block_size,
        node_selector: Some(selector.into()),
        ..IPPoolSpec::default()
    }
}

/// The seed lab: default-ipv4-ippool 198.19.16.0/21 (all()), external-pool 198.19.24.0/21 /29 (!all()).
fn seed() -> Ipam {
    let mut ipam = Ipam::new(IpamConfig::default());
    ipam.upsert_pool(
        "default-ipv4-ippool",
        &pool("198.19.16.0/21", None, "all()"),
    )
    .unwrap();
    ipam.upsert_pool("external-pool", &pool("198.19.24.0/21", Some(29), "!all()"))
        .unwrap();
    ipam
}

fn commit_all(ipam: &mut Ipam) -> Vec<BlockWrite> {
    let writes = ipam.prepare_commit();
    for w in &writes {
        ipam.commit_succeeded(&w.cidr, w.sequence).unwrap();
    }
    writes
}

fn empty() -> BTreeMap<String, String> {
    BTreeMap::new()
}

/// Pool selection for a pod with these annotations on a node with these labels.
fn select(
    ipam: &Ipam,
    pod: &BTreeMap<String, String>,
    ns: &BTreeMap<String, String>,
    node: &BTreeMap<String, String>,
) -> Result<PoolSelection, IpamError> {
    ipam.select_pools(&PodContext {
        pod_annotations: pod,
        namespace_annotations: ns,
        namespace_labels: None,
        node_labels: node,
    })
}

#[test]
fn seed_node_gets_a_26_of_the_default_pool_and_its_blackhole() {
    let mut ipam = seed();
    let labels = map(&[("kubernetes.io/hostname", "node1")]);
    assert_eq!(ipam.pools_for_node(&labels), vec!["default-ipv4-ippool"]);
    let claim = ipam
        .claim_block("node1", "default-ipv4-ippool", t(0))
        .unwrap();
    assert_eq!(claim.cidr.prefix_len(), 26);
    assert!(net("198.19.16.0/21").contains(&claim.cidr));
    assert_eq!(claim.affinity_name, format!("node1-{}", claim.block_name));
    assert_eq!(claim.affinity.node, "node1");
    // The agent's blackhole route is the node's block.
    assert_eq!(ipam.node_blocks("node1"), vec![claim.cidr]);

    let ns = empty();
    let pod_ann = empty();
    let sel = select(&ipam, &pod_ann, &ns, &labels).unwrap();
    assert_eq!(sel.v4.source, PoolSource::NodeSelector);
    let req = AssignRequest::pod("c1", "default", "nginx", "node1", t(1));
    let a = ipam.auto_assign(&req, Family::V4, &sel.v4).unwrap();
    // Ordinal 0 first: Calico hands out the network address too.
    assert_eq!(a.address, claim.cidr.network());
    assert!(!a.borrowed);
    let writes = commit_all(&mut ipam);
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].kind, WriteKind::Create);
    assert_eq!(writes[0].spec.affinity.as_deref(), Some("host:node1"));
    assert_eq!(
        writes[0].spec.attributes[0].handle_id.as_deref(),
        Some("k8s-pod-network.c1")
    );
    assert_eq!(
        writes[0].spec.attributes[0].secondary["namespace"],
        "default"
    );
    assert_eq!(writes[0].spec.attributes[0].secondary["pod"], "nginx");
    assert_eq!(writes[0].spec.attributes[0].secondary["node"], "node1");
    assert_eq!(
        writes[0].spec.attributes[0].secondary["timestamp"],
        "2023-11-14 22:13:21 +0000 UTC"
    );
    assert_eq!(
        writes[0].affinity.as_ref().unwrap().1,
        affinity_spec("node1", &claim.cidr)
    );
}

#[test]
fn seed_external_ns_gets_external_pool_despite_not_all_selector() {
    let mut ipam = seed();
    let labels = map(&[("kubernetes.io/hostname", "node2")]);
    let ns = map(&[(ANNOTATION_IPV4_POOLS, r#"["external-pool"]"#)]);
    let pod_ann = empty();
    let ctx = PodContext {
        pod_annotations: &pod_ann,
        namespace_annotations: &ns,
        namespace_labels: None,
        node_labels: &labels,
    };
    let sel = ipam.select_pools(&ctx).unwrap();
    assert_eq!(sel.v4.pools, vec!["external-pool"]);
    assert_eq!(sel.v4.source, PoolSource::NamespaceAnnotation);
    // The pool's selector does not pick node2 automatically.
    assert_eq!(ipam.pools_for_node(&labels), vec!["default-ipv4-ippool"]);
    let req = AssignRequest::pod("c9", "external-ns", "nginx", "node2", t(0));
    // No block yet: the agent signals demand for external-pool.
    let err = ipam.auto_assign(&req, Family::V4, &sel.v4).unwrap_err();
    assert_eq!(err.needs_block(), Some(("node2", "external-pool")));
    let claim = ipam.claim_block("node2", "external-pool", t(0)).unwrap();
    assert_eq!(claim.cidr.prefix_len(), 29);
    let a = ipam.auto_assign(&req, Family::V4, &sel.v4).unwrap();
    assert!(net("198.19.24.0/21").contains(&a.address));
    assert_eq!(a.block, claim.cidr);
}

#[test]
fn pod_annotation_overrides_namespace_and_accepts_cidrs() {
    let ipam = seed();
    let ns = map(&[(ANNOTATION_IPV4_POOLS, r#"["external-pool"]"#)]);
    let pod_ann = map(&[(ANNOTATION_IPV4_POOLS, r#"["198.19.16.0/21"]"#)]);
    let labels = empty();
    let sel = select(&ipam, &pod_ann, &ns, &labels).unwrap();
    assert_eq!(sel.v4.pools, vec!["default-ipv4-ippool"]);
    assert_eq!(sel.v4.source, PoolSource::PodAnnotation);
    // v6 has no annotation and no v6 pool.
    assert!(sel.v6.pools.is_empty());
}

#[test]
fn annotation_errors_name_pool_and_source() {
    let mut ipam = seed();
    let mut disabled = pool("198.19.40.0/21", None, "all()");
    disabled.disabled = true;
    ipam.upsert_pool("off", &disabled).unwrap();
    ipam.upsert_pool("v6", &pool("fd00::/48", None, "all()"))
        .unwrap();
    let labels = empty();
    let run = |pod: &[(&str, &str)], ns: &[(&str, &str)]| {
        let p = map(pod);
        let n = map(ns);
        select(&ipam, &p, &n, &labels)
    };
    let e = run(&[(ANNOTATION_IPV4_POOLS, r#"["nope"]"#)], &[]).unwrap_err();
    assert_eq!(
        e,
        IpamError::UnknownPool {
            pool: "nope".into(),
            source_kind: PoolSource::PodAnnotation
        }
    );
    assert!(e.to_string().contains("pod annotation names IP pool nope"));
    let e = run(&[], &[(ANNOTATION_IPV4_POOLS, r#"["off"]"#)]).unwrap_err();
    assert!(
        matches!(e, IpamError::PoolDisabled { ref pool, source_kind: PoolSource::NamespaceAnnotation } if pool == "off")
    );
    let e = run(&[(ANNOTATION_IPV4_POOLS, r#"["v6"]"#)], &[]).unwrap_err();
    assert!(matches!(e, IpamError::PoolWrongFamily { ref pool, .. } if pool == "v6"));
    let e = run(&[], &[(ANNOTATION_IPV6_POOLS, "[oops")]).unwrap_err();
    assert!(
        matches!(e, IpamError::MalformedAnnotation { ref annotation, source_kind: PoolSource::NamespaceAnnotation, .. } if annotation == ANNOTATION_IPV6_POOLS)
    );
    // Disabled pools are never auto-assigned from.
    let sel = run(&[], &[]).unwrap();
    assert_eq!(sel.v4.pools, vec!["default-ipv4-ippool"]);
    assert_eq!(sel.v6.pools, vec!["v6"]);
}

#[test]
fn explicit_addresses() {
    let mut ipam = seed();
    let p = map(&[(ANNOTATION_IP_ADDRS, r#"["198.19.28.208"]"#)]);
    let e = empty();
    let sel = select(&ipam, &p, &e, &e).unwrap();
    assert_eq!(sel.explicit, vec![ip("198.19.28.208")]);
    let req = AssignRequest::pod("c1", "external-ns", "nginx", "node1", t(0));
    let a = ipam
        .assign_address(&req, ip("198.19.28.208"), t(0))
        .unwrap();
    assert_eq!(a.address, ip("198.19.28.208"));
    assert_eq!(a.block, net("198.19.28.208/29"));
    assert_eq!(ipam.node_blocks("node1"), vec![net("198.19.28.208/29")]);
    let req2 = AssignRequest::pod("c2", "external-ns", "other", "node1", t(0));
    let e = ipam
        .assign_address(&req2, ip("198.19.28.208"), t(0))
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("198.19.28.208 is already in use by handle k8s-pod-network.c1")
    );
    let e = ipam
        .assign_address(&req2, ip("10.0.0.1"), t(0))
        .unwrap_err();
    assert_eq!(
        e,
        IpamError::AddressOutsidePools {
            address: ip("10.0.0.1")
        }
    );
    let bad = map(&[(ANNOTATION_IP_ADDRS, r#"["10.0.0.1","10.0.0.2"]"#)]);
    let e2 = empty();
    assert!(matches!(
        select(&ipam, &bad, &e2, &e2),
        Err(IpamError::BadExplicitAddress { .. })
    ));
}

#[test]
fn names_and_block_spec_round_trip() {
    assert_eq!(block_name(&net("198.19.22.128/26")), "198-19-22-128-26");
    assert_eq!(block_name(&net("fd00:1::/122")), "fd00-1---122");
    assert_eq!(
        affinity_name("node1", &net("198.19.22.128/26")),
        "node1-198-19-22-128-26"
    );
    let long = "n".repeat(260);
    let an = affinity_name(&long, &net("198.19.22.128/26"));
    assert_eq!(an.len(), 252);

    let mut b = Block::new(
        net("198.19.22.128/26"),
        Some(host_affinity("node1")),
        None,
        7,
    );
    let a1 = Attr::new(Some("h1"), [("pod".to_string(), "p1".to_string())]);
    let a2 = Attr::new(Some("h2"), [("pod".to_string(), "p2".to_string())]);
    assert_eq!(b.assign_next(a1.clone(), 8), Some(0));
    assert_eq!(b.assign_next(a2, 8), Some(1));
    assert_eq!(b.assign_next(a1, 8), Some(2)); // shares attribute 0
    assert_eq!(b.to_spec().attributes.len(), 2);
    assert!(b.release_ordinal(0).is_some());
    assert_eq!(
        b.to_spec().attributes.len(),
        2,
        "still referenced by ordinal 2"
    );
    assert!(b.release_ordinal(2).is_some());
    let spec = b.to_spec();
    // h1's record is gone and h2's index was compacted to 0.
    assert_eq!(spec.attributes.len(), 1);
    assert_eq!(spec.allocations[1], Some(0));
    // Release appends: FIFO reuse.
    assert_eq!(&spec.unallocated[spec.unallocated.len() - 2..], &[0, 2]);
    assert_eq!(spec.unallocated[0], 3);
    assert_eq!(
        spec.sequence_number_for_allocation.as_ref().unwrap()["1"],
        8
    );
    assert!(b.release_ordinal(0).is_none(), "double release is a no-op");
    let back = Block::from_spec(&spec).unwrap();
    assert_eq!(back, b);
    assert_eq!(back.to_spec(), spec);
    // JSON round trip through the CRD type keeps everything.
    let json = serde_json::to_string(&spec).unwrap();
    let parsed: IPAMBlockSpec = serde_json::from_str(&json).unwrap();
    assert_eq!(Block::from_spec(&parsed).unwrap(), b);
}

#[test]
fn inconsistent_block_specs_are_refused() {
    let good = Block::new(net("10.0.0.0/30"), None, None, 1).to_spec();
    let mut s = good.clone();
    s.allocations.pop();
    assert!(Block::from_spec(&s).is_err());
    let mut s = good.clone();
    s.unallocated.pop();
    assert!(
        Block::from_spec(&s)
            .unwrap_err()
            .to_string()
            .contains("neither allocated")
    );
    let mut s = good.clone();
    s.allocations[0] = Some(3);
    assert!(Block::from_spec(&s).is_err());
    let mut s = good;
    s.cidr = "10.0.0.1/30".into();
    assert!(Block::from_spec(&s).is_err());
}

#[test]
fn block_choice_is_deterministic_and_skips_taken() {
    let mut a = seed();
    let b = seed();
    let c1 = a.claim_block("node7", "default-ipv4-ippool", t(0)).unwrap();
    assert_eq!(
        b.find_free_block("default-ipv4-ippool", "node7"),
        Some(c1.cidr)
    );
    let c2 = a.claim_block("node7", "default-ipv4-ippool", t(0)).unwrap();
    assert_ne!(c1.cidr, c2.cidr);
    // Every /26 of a /21 can be claimed exactly once (32 blocks), then the pool is exhausted.
    a.set_config(IpamConfig {
        strict_affinity: false,
        max_blocks_per_host: 100,
    });
    let mut seen = HashSet::from([c1.cidr, c2.cidr]);
    for i in 0..30 {
        let c = a
            .claim_block(&format!("n{i}"), "default-ipv4-ippool", t(0))
            .unwrap();
        assert!(seen.insert(c.cidr));
    }
    assert!(matches!(
        a.claim_block("late", "default-ipv4-ippool", t(0)),
        Err(IpamError::PoolsExhausted { .. })
    ));
}

#[test]
fn block_choice_skips_every_subnet_a_larger_foreign_block_covers() {
    let mut a = seed();
    a.set_config(IpamConfig {
        strict_affinity: false,
        max_blocks_per_host: 100,
    });
    // A /24 (four /26s) written by someone else inside the /21 pool.
    let big = net("198.19.17.0/24");
    a.observe_block(&Block::new(big, None, None, 1).to_spec())
        .unwrap();
    for i in 0..28 {
        let c = a
            .claim_block(&format!("n{i}"), "default-ipv4-ippool", t(0))
            .unwrap();
        assert!(!big.contains(&c.cidr.network()), "{} inside {big}", c.cidr);
    }
    assert_eq!(a.find_free_block("default-ipv4-ippool", "late"), None);
}

#[test]
fn block_limit_and_borrowing() {
    let mut ipam = Ipam::new(IpamConfig {
        strict_affinity: false,
        max_blocks_per_host: 1,
    });
    ipam.upsert_pool("p", &pool("10.0.0.0/29", Some(30), "all()"))
        .unwrap();
    let fp = FamilyPools {
        pools: vec!["p".into()],
        source: PoolSource::NodeSelector,
    };
    ipam.claim_block("a", "p", t(0)).unwrap();
    for i in 0..4 {
        let r = AssignRequest::pod(&format!("a{i}"), "ns", &format!("a{i}"), "a", t(0));
        assert!(!ipam.auto_assign(&r, Family::V4, &fp).unwrap().borrowed);
    }
    // a's block is full and it is at its limit: BlockLimit, no borrowing (Calico).
    let r = AssignRequest::pod("a4", "ns", "a4", "a", t(0));
    assert!(matches!(
        ipam.auto_assign(&r, Family::V4, &fp),
        Err(IpamError::BlockLimit { limit: 1, .. })
    ));
    // b has no block and one is free: demand.
    let rb = AssignRequest::pod("b0", "ns", "b0", "b", t(0));
    assert_eq!(
        ipam.auto_assign(&rb, Family::V4, &fp)
            .unwrap_err()
            .needs_block(),
        Some(("b", "p"))
    );
    // c claims the last block; now b cannot claim and borrows from c's block.
    ipam.claim_block("c", "p", t(0)).unwrap();
    let a = ipam.auto_assign(&rb, Family::V4, &fp).unwrap();
    assert!(a.borrowed);
    // With strictAffinity nothing is borrowed.
    ipam.set_config(IpamConfig {
        strict_affinity: true,
        max_blocks_per_host: 1,
    });
    let rb1 = AssignRequest::pod("b1", "ns", "b1", "b", t(0));
    assert!(matches!(
        ipam.auto_assign(&rb1, Family::V4, &fp),
        Err(IpamError::PoolsExhausted { .. })
    ));
}

#[test]
fn release_by_handle_is_idempotent_and_by_address() {
    let mut ipam = seed();
    ipam.claim_block("n", "default-ipv4-ippool", t(0)).unwrap();
    let fp = FamilyPools {
        pools: vec!["default-ipv4-ippool".into()],
        source: PoolSource::NodeSelector,
    };
    let r = AssignRequest::pod("c1", "ns", "p", "n", t(0));
    let a1 = ipam.auto_assign(&r, Family::V4, &fp).unwrap();
    let a2 = ipam.auto_assign(&r, Family::V4, &fp).unwrap();
    assert_eq!(
        ipam.handle_addresses("k8s-pod-network.c1"),
        vec![a1.address, a2.address]
    );
    assert_eq!(
        ipam.release_address(a2.address).as_deref(),
        Some("k8s-pod-network.c1")
    );
    assert_eq!(ipam.release_address(a2.address), None);
    assert_eq!(ipam.release_handle("k8s-pod-network.c1"), vec![a1.address]);
    assert!(ipam.release_handle("k8s-pod-network.c1").is_empty());
    assert_eq!(ipam.block(&a1.block).unwrap().allocated(), 0);
}

#[test]
fn group_commit_one_write_per_block_and_rollback_reports_losses() {
    let mut ipam = seed();
    ipam.claim_block("n", "default-ipv4-ippool", t(0)).unwrap();
    commit_all(&mut ipam);
    let fp = FamilyPools {
        pools: vec!["default-ipv4-ippool".into()],
        source: PoolSource::NodeSelector,
    };
    let mut tickets = Vec::new();
    for i in 0..50 {
        let r = AssignRequest::pod(&format!("c{i}"), "ns", &format!("p{i}"), "n", t(1));
        tickets.push(ipam.auto_assign(&r, Family::V4, &fp).unwrap());
    }
    let writes = ipam.prepare_commit();
    assert_eq!(writes.len(), 1, "50 pods, one block, one write");
    let w = &writes[0];
    assert_eq!(w.kind, WriteKind::Update);
    assert_eq!(w.ops.len(), 50);
    assert_eq!(w.expected_sequence.map(|s| s + 1), Some(w.sequence));
    assert_eq!(w.spec.sequence_number, Some(w.sequence));
    assert!(
        tickets
            .iter()
            .all(|a| ipam.durability(&a.ticket) == Durability::Pending)
    );
    // While the write is in flight, a later pod queues behind it.
    let late = ipam
        .auto_assign(
            &AssignRequest::pod("late", "ns", "late", "n", t(2)),
            Family::V4,
            &fp,
        )
        .unwrap();
    assert!(
        ipam.prepare_commit().is_empty(),
        "one write per block in flight"
    );
    assert_eq!(ipam.lost_by(&w.cidr).len(), 51);
    let lost = ipam.rollback(&w.cidr);
    assert_eq!(lost.len(), 51);
    assert!(lost.iter().all(|o| o.kind == OpKind::Assign));
    assert!(
        tickets
            .iter()
            .all(|a| ipam.durability(&a.ticket) == Durability::Lost)
    );
    assert_eq!(ipam.durability(&late.ticket), Durability::Lost);
    assert_eq!(ipam.block(&w.cidr).unwrap().allocated(), 0);
    assert!(ipam.handle_addresses("k8s-pod-network.c0").is_empty());
    // Redo and succeed; the echo of our own write from the watch is recognised.
    let a = ipam
        .auto_assign(
            &AssignRequest::pod("c0", "ns", "p0", "n", t(3)),
            Family::V4,
            &fp,
        )
        .unwrap();
    let writes = ipam.prepare_commit();
    assert!(ipam.observe_block(&writes[0].spec).unwrap().is_empty());
    assert_eq!(ipam.durability(&a.ticket), Durability::Committed);
    assert!(!ipam.has_uncommitted());
}

#[test]
fn newer_block_from_api_supersedes_uncommitted_ops() {
    let mut ipam = seed();
    let c = ipam.claim_block("n", "default-ipv4-ippool", t(0)).unwrap();
    let w = commit_all(&mut ipam);
    let fp = FamilyPools {
        pools: vec!["default-ipv4-ippool".into()],
        source: PoolSource::NodeSelector,
    };
    ipam.auto_assign(
        &AssignRequest::pod("x", "ns", "x", "n", t(1)),
        Family::V4,
        &fp,
    )
    .unwrap();
    // Someone else (GC) wrote the block meanwhile.
    let mut theirs = w[0].spec.clone();
    theirs.sequence_number = Some(w[0].sequence + 1);
    let lost = ipam.observe_block(&theirs).unwrap();
    assert_eq!(lost.len(), 1);
    assert_eq!(ipam.block(&c.cidr).unwrap().allocated(), 0);
    assert!(ipam.prepare_commit().is_empty());
}

#[test]
fn free_block_deletes_block_and_affinity() {
    let mut ipam = seed();
    let c = ipam.claim_block("n", "default-ipv4-ippool", t(0)).unwrap();
    commit_all(&mut ipam);
    ipam.free_block(&c.cidr).unwrap();
    let w = ipam.prepare_commit();
    assert_eq!(w[0].kind, WriteKind::Delete);
    assert_eq!(w[0].affinity.as_ref().unwrap().0, c.affinity_name);
    ipam.commit_succeeded(&c.cidr, w[0].sequence).unwrap();
    assert!(ipam.block(&c.cidr).is_none());
    assert!(ipam.node_blocks("n").is_empty());
}

#[test]
fn gc_decisions() {
    let mut ipam = seed();
    let fp = FamilyPools {
        pools: vec!["default-ipv4-ippool".into()],
        source: PoolSource::NodeSelector,
    };
    let b1 = ipam.claim_block("n1", "default-ipv4-ippool", t(0)).unwrap();
    let b2 = ipam.claim_block("n1", "default-ipv4-ippool", t(0)).unwrap();
    let g1 = ipam
        .claim_block("gone", "default-ipv4-ippool", t(0))
        .unwrap();
    let live = ipam
        .auto_assign(
            &AssignRequest::pod("live", "ns", "live", "n1", t(0)),
            Family::V4,
            &fp,
        )
        .unwrap();
    let dead = ipam
        .auto_assign(
            &AssignRequest::pod("dead", "ns", "dead", "n1", t(0)),
            Family::V4,
            &fp,
        )
        .unwrap();
    ipam.auto_assign(
        &AssignRequest::pod("orph", "ns", "orph", "gone", t(0)),
        Family::V4,
        &fp,
    )
    .unwrap();
    ipam.auto_assign(&AssignRequest::wireguard("n1", t(0)), Family::V4, &fp)
        .unwrap();
    ipam.auto_assign(&AssignRequest::wireguard("gone", t(0)), Family::V4, &fp)
        .unwrap();
    let pods = vec![LivePod {
        namespace: "ns".into(),
        name: "live".into(),
        node: "n1".into(),
        container_id: Some("live".into()),
        ips: vec![live.address],
    }];
    let nodes: HashSet<String> = ["n1".to_string()].into();
    let d = ipam.gc(&GcInput::new(&pods, &nodes, t(100)), &GcState::default());
    let handles: Vec<&str> = d.release.iter().map(|r| r.handle.as_str()).collect();
    // Node gone: at once. Dead pod on a live node: only after the grace period.
    assert_eq!(
        handles,
        vec!["k8s-pod-network.orph", "wireguard-tunnel-addr-gone"]
    );
    assert!(d.release.iter().all(|r| r.reason == LeakReason::NodeGone));
    assert!(d.state.leak_first_seen.contains_key("k8s-pod-network.dead"));
    // gone's block is empty after these releases, but the node may come back: the block waits
    // out the grace period, counted from now.
    assert!(d.free_blocks.is_empty(), "{:?}", d.free_blocks);
    assert_eq!(d.state.node_gone_since.get("gone"), Some(&t(100)));
    assert!(!d.state.node_gone_since.contains_key("n1"));
    // n1's second block is empty but the grace period has not passed.
    assert!(d.state.empty_first_seen.contains_key(&b2.cidr));

    let later = t(100) + DEFAULT_LEAK_GRACE;
    let d2 = ipam.gc(&GcInput::new(&pods, &nodes, later), &d.state);
    let handles: Vec<&str> = d2.release.iter().map(|r| r.handle.as_str()).collect();
    assert!(handles.contains(&"k8s-pod-network.dead"));
    assert!(
        !handles
            .iter()
            .any(|h| h.contains("live") || *h == "wireguard-tunnel-addr-n1")
    );
    let freed: Vec<IpNet> = d2.free_blocks.iter().map(|f| f.cidr).collect();
    assert!(freed.contains(&b2.cidr) && !freed.contains(&b1.cidr));
    let g = d2.free_blocks.iter().find(|f| f.cidr == g1.cidr);
    assert_eq!(
        g.map(|f| f.reason),
        Some(FreeReason::NodeGone),
        "gone for the grace period"
    );
    assert_eq!(dead.block, b1.cidr);
    // Apply and check nothing is left to find.
    for r in d2.release.iter() {
        ipam.release_handle(&r.handle);
    }
    for f in &d2.free_blocks {
        ipam.free_block(&f.cidr).unwrap();
    }
    commit_all(&mut ipam);
    let report = ipam.check(&pods, &nodes, &[]);
    assert_eq!(report.problems(), 0, "{report:?}");
}

#[test]
fn gc_keeps_the_blocks_of_a_node_that_comes_back() {
    let mut ipam = seed();
    let fp = FamilyPools {
        pools: vec!["default-ipv4-ippool".into()],
        source: PoolSource::NodeSelector,
    };
    let b = ipam.claim_block("n2", "default-ipv4-ippool", t(0)).unwrap();
    ipam.auto_assign(
        &AssignRequest::pod("c", "ns", "p", "n2", t(0)),
        Family::V4,
        &fp,
    )
    .unwrap();
    commit_all(&mut ipam);
    let none: HashSet<String> = HashSet::new();
    // n2 deleted: its pod's address goes at once, its block stays.
    let d = ipam.gc(&GcInput::new(&[], &none, t(10)), &GcState::default());
    assert_eq!(d.release.len(), 1);
    assert_eq!(d.release[0].reason, LeakReason::NodeGone);
    assert!(d.free_blocks.is_empty());
    for r in &d.release {
        ipam.release_handle(&r.handle);
    }
    commit_all(&mut ipam);
    // Still within the grace period: kept, and the first sighting is carried over.
    let almost = t(10) + DEFAULT_LEAK_GRACE - Duration::from_secs(1);
    let d2 = ipam.gc(&GcInput::new(&[], &none, almost), &d.state);
    assert!(d2.free_blocks.is_empty());
    assert_eq!(d2.state.node_gone_since.get("n2"), Some(&t(10)));
    // The Node is re-created: it keeps its block and its gone-since time is dropped.
    let back: HashSet<String> = ["n2".to_string()].into();
    let d3 = ipam.gc(&GcInput::new(&[], &back, almost), &d2.state);
    assert!(d3.free_blocks.is_empty());
    assert!(d3.state.node_gone_since.is_empty());
    assert_eq!(ipam.node_blocks("n2"), vec![b.cidr]);
    // Deleted again: the grace period starts over, then the block is freed.
    let again = almost + Duration::from_secs(60);
    let d4 = ipam.gc(&GcInput::new(&[], &none, again), &d3.state);
    assert!(d4.free_blocks.is_empty(), "the clock restarted");
    let d5 = ipam.gc(
        &GcInput::new(&[], &none, again + DEFAULT_LEAK_GRACE),
        &d4.state,
    );
    assert_eq!(d5.free_blocks.len(), 1);
    assert_eq!(d5.free_blocks[0].cidr, b.cidr);
    assert_eq!(d5.free_blocks[0].reason, FreeReason::NodeGone);
    assert_eq!(
        d5.free_blocks[0].affinity_name.as_deref(),
        Some(b.affinity_name.as_str())
    );
}

#[test]
fn records_keep_foreign_attributes_and_timestamps_verbatim() {
    // Calico writes Go's time format; other tools may add keys. Both must survive a round trip.
    let mut b = Block::new(net("10.0.0.0/30"), Some(host_affinity("n")), None, 5);
    let foreign = Attr::new(
        Some("k8s-pod-network.x"),
        [
            (
                "timestamp".into(),
                "2024-05-01 10:00:00.123456789 +0000 UTC".into(),
            ),
            ("note".into(), "from calico".into()),
            ("namespace".into(), "ns".into()),
            ("pod".into(), "p".into()),
        ],
    );
    let ours = Attr::new(
        Some("k8s-pod-network.y"),
        [("timestamp".into(), "2023-11-14T22:13:20Z".into())],
    );
    // Not canonical (Feb 30, lowercase z): kept as text too.
    let odd = Attr::new(
        None,
        [
            ("timestamp".into(), "2023-02-30T00:00:00Z".into()),
            ("node".into(), "n".into()),
        ],
    );
    let odd2 = Attr::new(None, [("timestamp".into(), "2023-02-01T00:00:00z".into())]);
    for a in [foreign.clone(), ours.clone(), odd, odd2] {
        b.assign_next(a, 6).unwrap();
    }
    assert_eq!(
        foreign.get("timestamp").as_deref(),
        Some("2024-05-01 10:00:00.123456789 +0000 UTC")
    );
    assert_eq!(foreign.get("note").as_deref(), Some("from calico"));
    assert_eq!(foreign.pod(), Some("p"));
    assert_eq!(
        ours.get("timestamp").as_deref(),
        Some("2023-11-14T22:13:20Z")
    );
    let spec = b.to_spec();
    assert_eq!(
        spec.attributes[2].secondary["timestamp"],
        "2023-02-30T00:00:00Z"
    );
    assert_eq!(
        spec.attributes[3].secondary["timestamp"],
        "2023-02-01T00:00:00z"
    );
    assert_eq!(spec.attributes[0].secondary.len(), 4);
    let back = Block::from_spec(&spec).unwrap();
    assert_eq!(back, b);
    assert_eq!(back.to_spec(), spec);
}

#[test]
fn handles_index_every_address_once() {
    let mut ipam = seed();
    let fp = FamilyPools {
        pools: vec!["default-ipv4-ippool".into()],
        source: PoolSource::NodeSelector,
    };
    ipam.claim_block("n1", "default-ipv4-ippool", t(0)).unwrap();
    let req = AssignRequest::pod("c", "ns", "p", "n1", t(0));
    let a1 = ipam.auto_assign(&req, Family::V4, &fp).unwrap();
    let a2 = ipam.auto_assign(&req, Family::V4, &fp).unwrap();
    ipam.auto_assign(
        &AssignRequest::pod("d", "ns", "q", "n1", t(0)),
        Family::V4,
        &fp,
    )
    .unwrap();
    assert_eq!(ipam.handle_count(), 2);
    let h = pod_handle("c");
    assert_eq!(ipam.handle_addresses(&h), vec![a1.address, a2.address]);
    // The index survives the block being replaced by its committed copy.
    let spec = commit_all(&mut ipam)[0].spec.clone();
    let mut copy = Ipam::new(IpamConfig::default());
    copy.observe_block(&spec).unwrap();
    assert_eq!(copy.handle_count(), 2);
    assert_eq!(copy.handle_addresses(&h), vec![a1.address, a2.address]);
    assert_eq!(ipam.release_address(a1.address), Some(h.clone()));
    assert_eq!(ipam.handle_count(), 2, "c still holds a2");
    assert_eq!(ipam.release_handle(&h), vec![a2.address]);
    assert_eq!(ipam.handle_count(), 1);
    assert!(ipam.release_handle(&h).is_empty());
    let ops = ipam.lost_by(&a1.block);
    assert_eq!(ops.len(), 2);
    assert_eq!(ops[0].handle.as_deref(), Some(h.as_str()));
}

#[test]
fn gc_keeps_a_pod_whose_sandbox_is_not_reported_yet() {
    let mut ipam = seed();
    let fp = FamilyPools {
        pools: vec!["default-ipv4-ippool".into()],
        source: PoolSource::NodeSelector,
    };
    ipam.claim_block("n1", "default-ipv4-ippool", t(0)).unwrap();
    ipam.auto_assign(
        &AssignRequest::pod("c", "ns", "p", "n1", t(0)),
        Family::V4,
        &fp,
    )
    .unwrap();
    let pods = vec![LivePod {
        namespace: "ns".into(),
        name: "p".into(),
        node: "n1".into(),
        ..LivePod::default()
    }];
    let nodes: HashSet<String> = ["n1".to_string()].into();
    let late = t(0) + Duration::from_secs(3600);
    let d = ipam.gc(
        &GcInput {
            grace: Duration::ZERO,
            ..GcInput::new(&pods, &nodes, late)
        },
        &GcState::default(),
    );
    assert!(d.release.is_empty());
    assert!(d.free_blocks.is_empty(), "the last block of a node stays");
}

#[test]
fn show_and_check_reports() {
    let mut ipam = seed();
    let fp = FamilyPools {
        pools: vec!["default-ipv4-ippool".into()],
        source: PoolSource::NodeSelector,
    };
    ipam.claim_block("n1", "default-ipv4-ippool", t(0)).unwrap();
    for i in 0..5 {
        ipam.auto_assign(
            &AssignRequest::pod(&format!("c{i}"), "ns", &format!("p{i}"), "n1", t(0)),
            Family::V4,
            &fp,
        )
        .unwrap();
    }
    // An orphaned block (pool deleted) and a block of the wrong size overlapping a /26.
    ipam.observe_block(&Block::new(net("10.9.0.0/26"), None, None, 1).to_spec())
        .unwrap();
    let n1 = ipam.node_blocks("n1")[0];
    let big = IpNet::new(n1.network(), 25).unwrap().trunc();
    let mut overl = Block::new(big, Some(host_affinity("n2")), None, 1);
    let o = overl.ordinal(n1.network()).unwrap();
    overl.assign_ordinal(o, Attr::new(Some("dup"), []), 1);
    ipam.observe_block(&overl.to_spec()).unwrap();

    let show = ipam.show();
    let def = &show.pools[0];
    assert_eq!(def.name, "default-ipv4-ippool");
    assert_eq!(def.total, 2048);
    assert_eq!(def.in_use, 6);
    assert_eq!(show.orphaned.len(), 1);
    let table = show.render(true);
    // calicoctl's tablewriter: headers centred, plain numbers right, everything else left.
    let want = "\
+----------+-----------------+-----------+------------+-------------+
| GROUPING |      CIDR       | IPS TOTAL | IPS IN USE |  IPS FREE   |
+----------+-----------------+-----------+------------+-------------+
| IP Pool  | 198.19.16.0/21  |      2048 | 6 (0%)     | 2042 (100%) |
| Block    | 198.19.21.0/25  |       128 | 1 (1%)     | 127 (99%)   |
| Block    | 198.19.21.64/26 |        64 | 5 (8%)     | 59 (92%)    |
| IP Pool  | 198.19.24.0/21  |      2048 | 0 (0%)     | 2048 (100%) |
| Block    | 10.9.0.0/26     |        64 | 0 (0%)     | 64 (100%)   |
+----------+-----------------+-----------+------------+-------------+
";
    assert_eq!(table, want);
    assert!(table.contains("| Block    | 10.9.0.0/26"), "{table}");

    let nodes: HashSet<String> = ["n1".to_string(), "n2".to_string()].into();
    let pods: Vec<LivePod> = (0..5)
        .map(|i| LivePod {
            namespace: "ns".into(),
            name: format!("p{i}"),
            node: "n1".into(),
            container_id: Some(format!("c{i}")),
            ips: vec![],
        })
        .collect();
    let r = ipam.check(&pods, &nodes, &[]);
    assert_eq!(r.orphaned_blocks, vec![net("10.9.0.0/26")]);
    assert_eq!(
        r.wrong_size_blocks,
        vec![(big, "default-ipv4-ippool".to_string(), 26)]
    );
    assert_eq!(r.overlapping_blocks.len(), 1);
    assert_eq!(r.duplicate_allocations.len(), 1);
    assert_eq!(r.duplicate_allocations[0].0, n1.network());
    // The `dup` record has no pod attributes and is no tunnel address: calicoctl counts it leaked.
    assert_eq!(r.leaked.len(), 1);
    assert_eq!(r.leaked[0].address, n1.network());
    assert_eq!(r.leaked[0].handle.as_deref(), Some("dup"));
    // The block findings are Ocelot's own: listed apart, not counted.
    assert_eq!(r.extra_findings(), 4);
    assert_eq!(r.problems(), 1);
    assert_eq!(r.summary(), "Check complete; found 1 problems.");
    let text = r.render();
    assert!(text.contains("Found 1 IPs that are allocated in IPAM but not actually in use."));
    assert!(text.contains(
        "Check complete; found 1 problems.\n\nOcelot's additional findings (4; not counted above):"
    ));
    assert!(text.contains("    10.9.0.0/26\n"), "{text}");
}

#[test]
fn calicoctl_number_formats() {
    assert_eq!(format_g5(2048.0), "2048");
    assert_eq!(format_g5(1_048_576.0), "1.0486e+06");
    assert_eq!(format_g5(1_000_000.0), "1e+06");
    assert_eq!(format_g5(64.0), "64");
    assert_eq!(format_g5(0.0), "0");
    assert_eq!(format_usage(5, 64), "5 (8%)");
}

#[test]
fn rfc3339_and_fnv() {
    assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    assert_eq!(
        rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
        "2000-02-29T00:00:00Z"
    );
    // Whole seconds, as a metav1.Time.
    assert_eq!(
        rfc3339(UNIX_EPOCH + Duration::from_millis(1_700_000_000_500)),
        "2023-11-14T22:13:20Z"
    );
    // Go: fnv.New32().Write([]byte("a")) → 0x050c5d7e.
    assert_eq!(fnv32("a"), 0x050c_5d7e);
}

#[test]
fn invalid_pools_are_refused() {
    let mut ipam = Ipam::new(IpamConfig::default());
    assert!(
        ipam.upsert_pool("x", &pool("10.0.0.1/24", None, ""))
            .is_err()
    );
    assert!(
        ipam.upsert_pool("x", &pool("10.0.0.0/24", Some(19), ""))
            .is_err()
    );
    assert!(
        ipam.upsert_pool("x", &pool("10.0.0.0/27", None, ""))
            .is_err()
    );
    let e = ipam
        .upsert_pool("x", &pool("10.0.0.0/24", None, "has(x"))
        .unwrap_err();
    assert!(e.to_string().contains("IP pool x: nodeSelector"));
}

mod fidelity;
