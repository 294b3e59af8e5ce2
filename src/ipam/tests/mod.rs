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

mod block;
mod fidelity;
mod gc_report;
mod release;
