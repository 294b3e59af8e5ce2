//! GC decisions, and the `ipam show` / `ipam check` reports.
use super::*;

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
