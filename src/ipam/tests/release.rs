//! `ipam release` decisions and `ipam check`'s blocks of nodes that no longer exist.
use super::*;

/// The seed pools, node1's block with pod `ns/live` (sandbox `live`), pod `ns/gone` (deleted)
/// and node1's WireGuard address, all committed.
fn seeded() -> (Ipam, IpAddr, IpAddr, IpAddr, IpNet) {
    let mut ipam = seed();
    let fp = FamilyPools {
        pools: vec!["default-ipv4-ippool".into()],
        source: PoolSource::NodeSelector,
    };
    let cidr = ipam
        .claim_block("node1", "default-ipv4-ippool", t(0))
        .unwrap()
        .cidr;
    let mut assign = |req: AssignRequest| ipam.auto_assign(&req, Family::V4, &fp).unwrap().address;
    let live = assign(AssignRequest::pod("live", "ns", "live", "node1", t(0)));
    let gone = assign(AssignRequest::pod("gone", "ns", "gone", "node1", t(0)));
    let wg = assign(AssignRequest::wireguard("node1", t(0)));
    commit_all(&mut ipam);
    (ipam, live, gone, wg, cidr)
}

fn live_pods() -> Vec<LivePod> {
    vec![LivePod {
        namespace: "ns".into(),
        name: "live".into(),
        node: "node1".into(),
        container_id: Some("live".into()),
        ips: vec![],
    }]
}

#[test]
fn release_refuses_what_is_alive_unless_forced() {
    let (mut ipam, live, gone, wg, cidr) = seeded();
    let nodes: HashSet<String> = ["node1".to_string()].into();
    let pods = live_pods();
    assert_eq!(
        ipam.release_checked(live, &pods, &nodes, false),
        Err(ReleaseRefused::InUse {
            address: live,
            holder: "pod ns/live".into(),
            handle: "k8s-pod-network.live".into(),
        })
    );
    let err = ipam.release_checked(wg, &pods, &nodes, false).unwrap_err();
    assert!(
        err.to_string().contains("node node1 (tunnel address)")
            && err.to_string().contains("--force"),
        "{err}"
    );
    // A pod that reports the address holds it even if the record names another.
    let reporting = vec![LivePod {
        namespace: "other".into(),
        name: "p".into(),
        ips: vec![gone],
        ..LivePod::default()
    }];
    assert!(matches!(
        ipam.release_checked(gone, &reporting, &nodes, false),
        Err(ReleaseRefused::InUse { holder, .. }) if holder == "pod other/p"
    ));
    assert_eq!(
        ipam.release_checked(ip("198.19.99.1"), &pods, &nodes, false),
        Err(ReleaseRefused::NoBlock {
            address: ip("198.19.99.1")
        })
    );

    // The deleted pod's address goes without force: one conditional update of its block.
    let before = ipam.block(&cidr).unwrap().sequence_number();
    let r = ipam.release_checked(gone, &pods, &nodes, false).unwrap();
    assert_eq!(r.handle.as_deref(), Some("k8s-pod-network.gone"));
    assert_eq!(r.holder, None);
    assert_eq!(r.write.kind, WriteKind::Update);
    assert_eq!(r.write.expected_sequence, Some(before));
    let written = Block::from_spec(&r.write.spec).unwrap();
    let o = written.ordinal(gone).unwrap();
    assert!(written.attr(o).is_none(), "released in the written spec");
    assert!(written.attr(written.ordinal(live).unwrap()).is_some());
    ipam.commit_succeeded(&r.write.cidr, r.write.sequence)
        .unwrap();
    assert_eq!(
        ipam.release_checked(gone, &pods, &nodes, false),
        Err(ReleaseRefused::NotAllocated {
            address: gone,
            block: cidr
        })
    );

    // Forced: the live pod's address goes too, and the holder is named.
    let r = ipam.release_checked(live, &pods, &nodes, true).unwrap();
    assert_eq!(r.holder.as_deref(), Some("pod ns/live"));
    let written = Block::from_spec(&r.write.spec).unwrap();
    assert!(written.attr(written.ordinal(live).unwrap()).is_none());
}

#[test]
fn check_lists_blocks_of_missing_nodes_and_leaks_of_deleted_pods() {
    let (ipam, _live, gone, _wg, cidr) = seeded();
    let pods = live_pods();
    let r = ipam.check(&pods, &["node1".to_string()].into(), &[]);
    assert!(r.blocks_of_missing_nodes.is_empty());
    assert_eq!(r.leaked.len(), 1);
    assert_eq!(r.leaked[0].address, gone);
    assert_eq!(r.leaked[0].allocated_to.as_deref(), Some("ns/gone"));

    // node1 deleted: its block is orphaned (and its tunnel address leaked with it).
    let r = ipam.check(&pods, &HashSet::new(), &[]);
    assert_eq!(r.blocks_of_missing_nodes, vec![(cidr, "node1".to_string())]);
    let text = r.render();
    assert!(
        text.contains(&format!(
            "  1 blocks affine to a node that does not exist\n    {cidr} (host:node1)\n"
        )),
        "{text}"
    );
}
