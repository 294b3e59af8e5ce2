//! Calico fidelity (issue 8): the seed's exact blocks and addresses, the borrowing walk, the block
//! limit's count, LoadBalancer pools, block release rules, timestamps and long affinity names.
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::api::ippool::AllowedUse;

fn node_labels(node: &str) -> BTreeMap<String, String> {
    map(&[("kubernetes.io/hostname", node)])
}

#[test]
fn seed_blocks_are_the_ones_calico_picks() {
    let mut ipam = seed();
    let mut got = Vec::new();
    for node in ["control", "node1", "node2"] {
        for pool in ipam.pools_for_node(&node_labels(node)) {
            got.push((node, ipam.claim_block(node, &pool, t(0)).unwrap().cidr));
        }
    }
    assert_eq!(
        got,
        vec![
            ("control", net("198.19.21.0/26")),
            ("node1", net("198.19.22.128/26")),
            ("node2", net("198.19.21.64/26")),
        ]
    );
    // external-pool selects no node; node1 claims a /29 of it on demand.
    let c = ipam.claim_block("node1", "external-pool", t(0)).unwrap();
    assert_eq!(c.cidr, net("198.19.28.208/29"));
    assert_eq!(c.affinity_name, "node1-198-19-28-208-29");
}

#[test]
fn seed_pod_addresses_follow_the_lowest_free_ordinal() {
    let mut ipam = seed();
    ipam.claim_block("node1", "default-ipv4-ippool", t(0))
        .unwrap();
    let labels = node_labels("node1");
    let sel = select(&ipam, &empty(), &empty(), &labels).unwrap();
    let mut addrs = Vec::new();
    for (i, pod) in ["a", "b", "c"].iter().enumerate() {
        let req = AssignRequest::pod(&format!("c{i}"), "default", pod, "node1", t(1));
        addrs.push(ipam.auto_assign(&req, Family::V4, &sel.v4).unwrap().address);
    }
    let tunnel = ipam.tunnel_pools(Family::V4, &labels);
    let wg = AssignRequest::wireguard("node1", t(2));
    addrs.push(ipam.auto_assign(&wg, Family::V4, &tunnel).unwrap().address);
    assert_eq!(
        addrs,
        [
            "198.19.22.128",
            "198.19.22.129",
            "198.19.22.130",
            "198.19.22.131"
        ]
        .map(ip)
    );

    let ns = map(&[(ANNOTATION_IPV4_POOLS, r#"["external-pool"]"#)]);
    let sel = select(&ipam, &empty(), &ns, &labels).unwrap();
    let nginx = AssignRequest::pod("n", "external-ns", "nginx", "node1", t(3));
    let e = ipam.auto_assign(&nginx, Family::V4, &sel.v4).unwrap_err();
    assert_eq!(e.needs_block(), Some(("node1", "external-pool")));
    ipam.claim_block("node1", "external-pool", t(3)).unwrap();
    let a = ipam.auto_assign(&nginx, Family::V4, &sel.v4).unwrap();
    assert_eq!(a.address, ip("198.19.28.208"));
}

#[test]
fn borrowing_walks_from_the_same_start_as_claims() {
    // 8 blocks; Go gives node1 the start index 4 of 8 (testdata/go_block_start.txt).
    assert_eq!(block_walk_start("node1", 8), 4);
    let mut ipam = Ipam::new(IpamConfig::default());
    ipam.upsert_pool("p", &pool("10.0.0.0/23", None, "all()"))
        .unwrap();
    for i in 0..8 {
        ipam.claim_block(&format!("other{i}"), "p", t(0)).unwrap();
    }
    let fp = FamilyPools {
        pools: vec!["p".into()],
        source: PoolSource::NodeSelector,
    };
    let req = AssignRequest::pod("x", "ns", "p", "node1", t(0));
    let a = ipam.auto_assign(&req, Family::V4, &fp).unwrap();
    assert!(a.borrowed);
    assert_eq!(a.block, net("10.0.1.0/26"));
    // Block 4 full: the walk goes forward to block 5, then wraps to 0.
    let b4 = ipam.pool("p").unwrap().block_at(4);
    while ipam.block(&b4).unwrap().free() > 0 {
        ipam.auto_assign(&req, Family::V4, &fp).unwrap();
    }
    assert_eq!(
        ipam.auto_assign(&req, Family::V4, &fp).unwrap().block,
        net("10.0.1.64/26")
    );
}

#[test]
fn block_limit_counts_only_blocks_usable_for_the_request() {
    let mut ipam = seed();
    ipam.upsert_pool("v6", &pool("fd00::/120", Some(122), "all()"))
        .unwrap();
    ipam.set_config(IpamConfig {
        strict_affinity: false,
        max_blocks_per_host: 1,
    });
    // node1 already owns one v6 block and one external-pool block.
    ipam.claim_block("node1", "v6", t(0)).unwrap();
    ipam.claim_block("node1", "external-pool", t(0)).unwrap();
    // A v4 request from the default pool does not count either of them.
    let sel = select(&ipam, &empty(), &empty(), &node_labels("node1")).unwrap();
    let req = AssignRequest::pod("c", "ns", "p", "node1", t(0));
    let e = ipam.auto_assign(&req, Family::V4, &sel.v4).unwrap_err();
    assert_eq!(e.needs_block(), Some(("node1", "default-ipv4-ippool")));
    ipam.claim_block("node1", "default-ipv4-ippool", t(0))
        .unwrap();
    // A second block of the same pool is over the limit.
    assert!(matches!(
        ipam.claim_block("node1", "default-ipv4-ippool", t(0)),
        Err(IpamError::BlockLimit { limit: 1, .. })
    ));
}

#[test]
fn loadbalancer_pools_never_give_nodes_affinity() {
    let mut ipam = seed();
    let mut lb = pool("198.19.32.0/24", None, "all()");
    lb.allowed_uses = Some(vec![AllowedUse::LoadBalancer]);
    ipam.upsert_pool("lb", &lb).unwrap();
    assert_eq!(
        ipam.pools_for_node(&node_labels("node1")),
        vec!["default-ipv4-ippool"]
    );
    assert!(matches!(
        ipam.claim_block("node1", "lb", t(0)),
        Err(IpamError::PoolNotForUse { ref pool, .. }) if pool == "lb"
    ));
    assert!(ipam.node_blocks("node1").is_empty());
}

#[test]
fn empty_unaffine_block_is_deleted_with_its_last_address() {
    let mut ipam = seed();
    let mut b = Block::new(net("198.19.17.0/26"), None, None, 3);
    b.assign_next(Attr::new(Some("k8s-pod-network.a"), []), 3)
        .unwrap();
    b.assign_next(Attr::new(Some("k8s-pod-network.b"), []), 3)
        .unwrap();
    ipam.observe_block(&b.to_spec()).unwrap();
    ipam.release_handle("k8s-pod-network.a");
    let w = commit_all(&mut ipam);
    assert_eq!(w[0].kind, WriteKind::Update);
    ipam.release_handle("k8s-pod-network.b");
    let w = commit_all(&mut ipam);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].kind, WriteKind::Delete);
    // No affinity, so no BlockAffinity to delete with it.
    assert_eq!(w[0].affinity, None);
    assert_eq!(ipam.block(&net("198.19.17.0/26")), None);
    // An affine block stays when it empties.
    let c = ipam
        .claim_block("node1", "default-ipv4-ippool", t(0))
        .unwrap();
    commit_all(&mut ipam);
    let sel = select(&ipam, &empty(), &empty(), &node_labels("node1")).unwrap();
    let req = AssignRequest::pod("z", "ns", "p", "node1", t(0));
    ipam.auto_assign(&req, Family::V4, &sel.v4).unwrap();
    ipam.release_handle(&req.handle);
    assert_eq!(commit_all(&mut ipam)[0].kind, WriteKind::Update);
    assert!(ipam.block(&c.cidr).is_some());
}

#[test]
fn blocks_of_pools_no_longer_selecting_the_node_are_released_when_empty() {
    let mut ipam = seed();
    ipam.upsert_pool("rack", &pool("198.19.40.0/24", None, "rack == 'a'"))
        .unwrap();
    let rack_a = map(&[("kubernetes.io/hostname", "node1"), ("rack", "a")]);
    let mut claimed = Vec::new();
    for p in ipam.pools_for_node(&rack_a) {
        claimed.push(ipam.claim_block("node1", &p, t(0)).unwrap().cidr);
    }
    commit_all(&mut ipam);
    let rack_block = claimed[1];
    assert!(net("198.19.40.0/24").contains(&rack_block));
    // Still selected: nothing released.
    assert!(ipam.release_unselected_blocks("node1", &rack_a).is_empty());
    // The node moved racks, but a pod still holds an address in the rack block: it stays.
    let fp = FamilyPools {
        pools: vec!["rack".into()],
        source: PoolSource::PodAnnotation,
    };
    let req = AssignRequest::pod("r", "ns", "p", "node1", t(0));
    ipam.auto_assign(&req, Family::V4, &fp).unwrap();
    let moved = node_labels("node1");
    assert!(ipam.release_unselected_blocks("node1", &moved).is_empty());
    // Once empty it goes, with its affinity; the default pool's block (still selecting) stays.
    ipam.release_handle(&req.handle);
    assert_eq!(
        ipam.release_unselected_blocks("node1", &moved),
        vec![rack_block]
    );
    let w = commit_all(&mut ipam);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].kind, WriteKind::Delete);
    assert!(w[0].affinity.is_some());
    assert_eq!(ipam.node_blocks("node1"), vec![claimed[0]]);
}

#[test]
fn timestamps_are_written_in_gos_form_and_both_forms_are_read() {
    let at = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_120_000_000);
    assert_eq!(go_utc_string(at), "2023-11-14 22:13:20.12 +0000 UTC");
    assert_eq!(
        go_utc_string(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        "2023-11-14 22:13:20 +0000 UTC"
    );
    let mut ipam = seed();
    ipam.claim_block("node1", "default-ipv4-ippool", t(0))
        .unwrap();
    let sel = select(&ipam, &empty(), &empty(), &node_labels("node1")).unwrap();
    ipam.auto_assign(
        &AssignRequest::pod("c", "ns", "p", "node1", at),
        Family::V4,
        &sel.v4,
    )
    .unwrap();
    let w = commit_all(&mut ipam);
    assert_eq!(
        w[0].spec.attributes[0].secondary["timestamp"],
        "2023-11-14 22:13:20.12 +0000 UTC"
    );
    // Read back, both forms are kept as numbers and written back unchanged.
    for text in [
        "2023-11-14 22:13:20.12 +0000 UTC",
        "2024-05-01 10:00:00.123456789 +0000 UTC",
        "2023-11-14T22:13:20Z",
        "2023-11-14T22:13:20.5Z",
    ] {
        let (nanos, form) = stamp::parse(text).unwrap_or_else(|| panic!("{text}"));
        assert_eq!(stamp::render(nanos, form), text);
    }
    assert_eq!(
        stamp::parse("2023-11-14 22:13:20 +0000 UTC").map(|s| s.0),
        stamp::parse("2023-11-14T22:13:20Z").map(|s| s.0)
    );
    // Not canonical: no stamp (the record keeps the text verbatim).
    for text in [
        "2023-02-30T00:00:00Z",
        "2023-11-14 22:13:20.120 +0000 UTC",
        "2023-11-14 22:13:20 +0100 CET",
        "2023-11-14T22:13:60Z",
    ] {
        assert_eq!(stamp::parse(text), None, "{text}");
    }
}

#[test]
fn long_affinity_names_are_built_as_calico_builds_them() {
    let node = "n".repeat(260);
    let name = affinity_name(&node, &net("198.19.22.128/26"));
    // sha256("nnn…n+198-19-22-128-26")[:11], the node cut to 252 − 16 − 13 = 223 characters.
    assert_eq!(
        name,
        format!("{}-198-19-22-128-26-1edb7e8caf3", "n".repeat(223))
    );
    assert_eq!(name.len(), 252);
    // Just under the limit: unchanged.
    let short = "m".repeat(252 - 17);
    assert_eq!(
        affinity_name(&short, &net("198.19.22.128/26")),
        format!("{short}-198-19-22-128-26")
    );
}

#[test]
fn borrowed_addresses_are_listed_per_node() {
    let mut ipam = seed();
    ipam.claim_block("node2", "default-ipv4-ippool", t(0))
        .unwrap();
    let fp = FamilyPools {
        pools: vec!["default-ipv4-ippool".into()],
        source: PoolSource::NodeSelector,
    };
    ipam.auto_assign(
        &AssignRequest::pod("own", "ns", "p", "node2", t(0)),
        Family::V4,
        &fp,
    )
    .unwrap();
    // node1's pod takes an address in node2's block (an explicit address; strictAffinity off).
    let req = AssignRequest::pod("b", "ns", "q", "node1", t(0));
    let a = ipam.assign_address(&req, ip("198.19.21.70"), t(0)).unwrap();
    assert!(a.borrowed);
    assert_eq!(
        ipam.borrowed_addresses(),
        BTreeMap::from([("node1".to_string(), vec![ip("198.19.21.70")])])
    );
}

#[test]
fn check_counts_what_calicoctl_counts() {
    let mut ipam = seed();
    let mut off = pool("198.19.40.0/24", None, "all()");
    off.disabled = true;
    ipam.upsert_pool("off", &off).unwrap();
    ipam.claim_block("node1", "default-ipv4-ippool", t(0))
        .unwrap();
    let fp = FamilyPools {
        pools: vec!["default-ipv4-ippool".into()],
        source: PoolSource::NodeSelector,
    };
    let live = ipam
        .auto_assign(
            &AssignRequest::pod("live", "ns", "live", "node1", t(0)),
            Family::V4,
            &fp,
        )
        .unwrap();
    ipam.auto_assign(&AssignRequest::wireguard("node1", t(0)), Family::V4, &fp)
        .unwrap();
    // A record of an unknown kind (no pod attributes, no tunnel type), e.g. another tool's.
    let cidr = ipam.node_blocks("node1")[0];
    let mut b = ipam.block(&cidr).unwrap().clone();
    b.assign_ordinal(
        10,
        Attr::new(Some("other-tool.x"), [("node".into(), "node1".into())]),
        9,
    );
    let mut spec = b.to_spec();
    spec.sequence_number = Some(i64::MAX / 2);
    ipam.observe_block(&spec).unwrap();
    let pods = vec![LivePod {
        namespace: "ns".into(),
        name: "live".into(),
        node: "node1".into(),
        container_id: Some("live".into()),
        // Its own address, one in a disabled pool, one outside every pool, one unallocated.
        ips: vec![
            live.address,
            ip("198.19.40.7"),
            ip("10.1.2.3"),
            ip("198.19.17.9"),
        ],
    }];
    let nodes: HashSet<String> = ["node1".to_string()].into();
    // GC leaves the unknown record alone (kube-controllers does) ...
    let d = ipam.gc(
        &GcInput {
            grace: Duration::ZERO,
            ..GcInput::new(&pods, &nodes, t(10))
        },
        &GcState::default(),
    );
    assert!(d.release.is_empty(), "{:?}", d.release);
    // ... but ipam check counts it, as calicoctl does.
    let handles = vec![
        "k8s-pod-network.live".to_string(),
        "k8s-pod-network.gone".to_string(),
    ];
    let r = ipam.check(&pods, &nodes, &handles);
    assert_eq!(r.leaked.len(), 1);
    assert_eq!(r.leaked[0].handle.as_deref(), Some("other-tool.x"));
    assert_eq!(r.leaked[0].address, b.address(10));
    // Outside enabled pools: the disabled pool's address and the foreign one.
    assert_eq!(
        r.in_use_outside_pools,
        vec![ip("10.1.2.3"), ip("198.19.40.7")]
    );
    assert_eq!(r.in_use_unallocated, vec![ip("198.19.17.9")]);
    assert_eq!(r.handles_without_addresses, vec!["k8s-pod-network.gone"]);
    assert_eq!(r.handles_with_addresses, 1);
    assert_eq!(r.problems(), 5);
    assert_eq!(r.extra_findings(), 0);
    assert!(
        r.render()
            .contains("Found 1 handles with no matching IPs (and 1 handles with matches).")
    );
}

#[test]
fn lab_fixture_pools_give_the_seed_blocks_and_nginx_address() {
    // What scripts/lab.sh (ocelot-lab's seed_ipam) computes, from the same fixture files.
    let mut ipam = Ipam::new(IpamConfig::default());
    for f in ["ippool-default.yaml", "ippool-external.yaml"] {
        let path = format!("{}/tests/fixtures/valid/{f}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(path).unwrap();
        let doc = crate::manifest::parse_documents(&text).unwrap().remove(0);
        let p: crate::api::IPPool = serde_json::from_value(doc).unwrap();
        ipam.upsert_pool(p.metadata.name.as_deref().unwrap(), &p.spec)
            .unwrap();
    }
    for (node, want) in [
        ("control", "198.19.21.0/26"),
        ("node1", "198.19.22.128/26"),
        ("node2", "198.19.21.64/26"),
    ] {
        let pools = ipam.pools_for_node(&node_labels(node));
        assert_eq!(pools, vec!["default-ipv4-ippool"]);
        assert_eq!(
            ipam.claim_block(node, &pools[0], t(0)).unwrap().cidr,
            net(want)
        );
    }
    let ns = map(&[(ANNOTATION_IPV4_POOLS, r#"["external-pool"]"#)]);
    let sel = select(&ipam, &empty(), &ns, &node_labels("node1")).unwrap();
    let req = AssignRequest::pod("0123456789ab", "external-ns", "nginx", "node1", t(1));
    assert!(ipam.auto_assign(&req, Family::V4, &sel.v4).is_err());
    ipam.claim_block("node1", "external-pool", t(1)).unwrap();
    let a = ipam.auto_assign(&req, Family::V4, &sel.v4).unwrap();
    assert_eq!(a.address, ip("198.19.28.208"));
}
