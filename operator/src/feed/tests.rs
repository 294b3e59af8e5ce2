//! Feed tests: what each watch event touches, pool roll-ups, sync and relists.
use ocelot::api::ipam::{AffinityState, BlockAffinitySpec};
use ocelot::api::node::NodeBGPSpec;
use ocelot::api::{IPPool, IPPoolSpec, Node, NodeSpec};

use super::*;

fn node(name: &str) -> Obj {
    let spec = NodeSpec {
        bgp: Some(NodeBGPSpec {
            ipv4_address: Some("198.19.0.2/20".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    Obj::Node(Box::new(Node::new(name, spec)))
}

fn pool() -> Obj {
    let spec = IPPoolSpec {
        cidr: "198.19.16.0/21".into(),
        ..Default::default()
    };
    Obj::IPPool(Box::new(IPPool::new("default-ipv4-ippool", spec)))
}

fn affinity() -> Obj {
    let spec = BlockAffinitySpec {
        cidr: "198.19.22.128/26".into(),
        node: "node1".into(),
        state: AffinityState::Confirmed,
        type_: Some("host".into()),
        deleted: false,
    };
    Obj::BlockAffinity(Box::new(BlockAffinity::new("node1-198-19-22-128-26", spec)))
}

fn list(feed: &mut Feed, kind: Kind, objs: Vec<Obj>) {
    feed.handle(Msg::Init(kind));
    for o in objs {
        feed.handle(Msg::Apply(o));
    }
    feed.handle(Msg::InitDone(kind));
}

fn blocks(feed: &Feed, node: &str) -> Vec<String> {
    let spec = feed.index.node_state(node).expect("node known");
    spec.blocks.into_iter().map(|b| b.cidr).collect()
}

fn ipam_block(cidr: &str, node: &str) -> Obj {
    let net: ipnet::IpNet = cidr.parse().unwrap();
    let spec = ocelot::ipam::Block::new(net, Some(format!("host:{node}")), None, 0).to_spec();
    Obj::IPAMBlock(Box::new(ocelot::api::IPAMBlock::new(
        &cidr.replace(['.', '/'], "-"),
        spec,
    )))
}

#[test]
fn blocks_count_in_their_pool_roll_up_once_the_pool_is_known() {
    let mut feed = Feed::default();
    list(
        &mut feed,
        Kind::IPAMBlock,
        vec![ipam_block("198.19.22.128/26", "node1")],
    );
    assert_eq!(
        feed.rollup.pool("default-ipv4-ippool").blocks,
        0,
        "no pool yet"
    );
    feed.rollup.take_dirty();
    list(&mut feed, Kind::IPPool, vec![pool()]);
    let counts = feed.rollup.pool("default-ipv4-ippool");
    assert_eq!(
        (counts.blocks, counts.free, counts.nodes_with_blocks),
        (1, 64, 1)
    );
    assert!(feed.rollup.take_dirty().contains(&Source::AllPools));
    feed.handle(Msg::Delete(ipam_block("198.19.22.128/26", "node1")));
    assert_eq!(feed.rollup.pool("default-ipv4-ippool").blocks, 0);
}

#[test]
fn a_status_only_change_of_a_source_object_touches_no_node() {
    use ocelot::api::bgp::{BGPPeerSpec, BGPPeerStatus};
    let mut feed = Feed::default();
    list(&mut feed, Kind::Node, vec![node("node1"), node("node2")]);
    let mut peer = BGPPeer::new(
        "bgppeer-global-host1",
        BGPPeerSpec {
            peer_ip: Some("198.19.15.254".into()),
            as_number: Some(64512),
            ..Default::default()
        },
    );
    list(
        &mut feed,
        Kind::BGPPeer,
        vec![Obj::BGPPeer(Box::new(peer.clone()))],
    );
    feed.take_pending();
    feed.rollup.take_dirty();
    feed.control_dirty = false;
    // The operator's own roll-up write comes back through the watch.
    peer.status = Some(BGPPeerStatus {
        nodes_selected: Some(2),
        ..Default::default()
    });
    feed.handle(Msg::Apply(Obj::BGPPeer(Box::new(peer.clone()))));
    assert!(
        feed.pending.is_empty(),
        "a global peer's status recomposed nodes"
    );
    assert!(!feed.control_dirty);
    assert_eq!(
        feed.rollup.take_dirty(),
        [Source::Peer("bgppeer-global-host1".into())].into()
    );
    assert_eq!(feed.peers["bgppeer-global-host1"].status, peer.status);
    // A spec edit reaches every node (a global peer).
    peer.spec.as_number = Some(64513);
    feed.handle(Msg::Apply(Obj::BGPPeer(Box::new(peer))));
    assert_eq!(feed.take_pending().len(), 2);
}

#[test]
fn synced_only_after_every_kind_listed_once() {
    let mut feed = Feed::default();
    for kind in &KINDS[..KINDS.len() - 1] {
        list(&mut feed, *kind, vec![]);
        assert!(!feed.synced());
    }
    list(&mut feed, KINDS[KINDS.len() - 1], vec![]);
    assert!(feed.synced());
}

#[test]
fn affinity_listed_before_its_pool_still_gives_the_block() {
    let mut feed = Feed::default();
    list(&mut feed, Kind::BlockAffinity, vec![affinity()]);
    list(&mut feed, Kind::Node, vec![node("node1")]);
    assert!(blocks(&feed, "node1").is_empty(), "no pool yet");
    list(&mut feed, Kind::IPPool, vec![pool()]);
    assert_eq!(blocks(&feed, "node1"), ["198.19.22.128/26"]);
}

#[test]
fn relist_prunes_what_was_deleted_meanwhile_and_marks_it_pending() {
    let mut feed = Feed::default();
    list(&mut feed, Kind::IPPool, vec![pool()]);
    list(&mut feed, Kind::BlockAffinity, vec![affinity()]);
    list(&mut feed, Kind::Node, vec![node("node1"), node("node2")]);
    feed.take_pending();
    // The watch broke; node2 was deleted before the relist.
    list(&mut feed, Kind::Node, vec![node("node1")]);
    assert_eq!(feed.index.node_names().collect::<Vec<_>>(), ["node1"]);
    assert!(feed.take_pending().contains("node2"));
    // A node deleted and created again gets its block back from the stored affinity.
    feed.handle(Msg::Delete(node("node1")));
    assert_eq!(feed.index.node_count(), 0);
    feed.handle(Msg::Apply(node("node1")));
    assert_eq!(blocks(&feed, "node1"), ["198.19.22.128/26"]);
}
