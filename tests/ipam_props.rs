//! Property tests of the IPAM engine: random claim / assign / release / commit (with failures) /
//! node delete (+ GC) / pool disable sequences over 3 pools and 60 nodes.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ocelot::api::ippool::IPPoolSpec;
use ocelot::ipam::*;
use proptest::prelude::*;

const NODES: usize = 60;
const POOLS: [(&str, &str, i32, &str); 3] = [
    // Small pools (8 blocks each) so that blocks fill, pools run out and borrowing happens.
    ("a", "10.0.0.0/25", 28, "all()"),
    ("b", "10.1.0.0/26", 29, "zone == \"b\""),
    ("c", "10.2.0.0/27", 30, "!all()"),
];

#[derive(Clone, Debug)]
enum Step {
    Claim {
        node: usize,
        pool: usize,
    },
    /// `annotated`: the namespace names this pool (used even if its selector excludes the node).
    Assign {
        node: usize,
        annotated: Option<usize>,
    },
    Explicit {
        node: usize,
        offset: u16,
    },
    Release {
        pick: usize,
        twice: bool,
    },
    ReleaseAddress {
        pick: usize,
    },
    Commit {
        fail_mask: u64,
    },
    DeleteNode {
        node: usize,
    },
    /// A deleted node's Node object is re-created.
    RestoreNode {
        node: usize,
    },
    TogglePool {
        pool: usize,
    },
    Gc,
}

/// Mostly a few busy nodes, so their blocks fill; sometimes any of the 60.
fn node() -> impl Strategy<Value = usize> {
    prop_oneof![3 => 0..4usize, 1 => 0..NODES]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => (node(), 0..3usize).prop_map(|(node, pool)| Step::Claim { node, pool }),
        10 => (node(), prop::option::weighted(0.3, 0..3usize))
            .prop_map(|(node, annotated)| Step::Assign { node, annotated }),
        1 => (node(), any::<u16>()).prop_map(|(node, offset)| Step::Explicit { node, offset }),
        3 => (any::<usize>(), any::<bool>()).prop_map(|(pick, twice)| Step::Release { pick, twice }),
        1 => any::<usize>().prop_map(|pick| Step::ReleaseAddress { pick }),
        3 => any::<u64>().prop_map(|fail_mask| Step::Commit { fail_mask }),
        1 => (0..NODES).prop_map(|node| Step::DeleteNode { node }),
        1 => (0..NODES).prop_map(|node| Step::RestoreNode { node }),
        1 => (0..3usize).prop_map(|pool| Step::TogglePool { pool }),
        1 => Just(Step::Gc),
    ]
}

fn node_name(i: usize) -> String {
    format!("node-{i}")
}

fn labels(i: usize) -> BTreeMap<String, String> {
    let zone = if i.is_multiple_of(2) { "b" } else { "a" };
    BTreeMap::from([("zone".to_string(), zone.to_string())])
}

#[derive(Clone, Debug)]
struct LiveModel {
    address: IpAddr,
    node: usize,
}

struct World {
    ipam: Ipam,
    specs: Vec<IPPoolSpec>,
    pods: HashMap<String, LiveModel>,
    nodes: HashSet<usize>,
    next_pod: usize,
    now: SystemTime,
    gc_state: GcState,
    /// Mirror of GC's node clock: when a GC run first saw each deleted node (that owns blocks) gone.
    gone_seen: HashMap<usize, SystemTime>,
    /// Outcome counts, to check the generator reaches the interesting paths (IPAM_PROP_STATS=1).
    stats: BTreeMap<&'static str, usize>,
}

impl World {
    fn new(strict: bool, max_blocks: u32) -> World {
        let mut ipam = Ipam::new(IpamConfig {
            strict_affinity: strict,
            max_blocks_per_host: max_blocks,
        });
        let mut specs = Vec::new();
        for (name, cidr, bs, sel) in POOLS {
            let spec = IPPoolSpec {
                cidr: cidr.into(),
                block_size: Some(bs),
                node_selector: Some(sel.into()),
                ..IPPoolSpec::default()
            };
            ipam.upsert_pool(name, &spec).unwrap();
            specs.push(spec);
        }
        World {
            ipam,
            specs,
            pods: HashMap::new(),
            nodes: (0..NODES).collect(),
            next_pod: 0,
            now: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            gc_state: GcState::default(),
            gone_seen: HashMap::new(),
            stats: BTreeMap::new(),
        }
    }

    fn live_pods(&self) -> Vec<LivePod> {
        self.pods
            .iter()
            .map(|(cid, m)| LivePod {
                namespace: "ns".into(),
                name: cid.clone(),
                node: node_name(m.node),
                container_id: Some(cid.clone()),
                ips: vec![m.address],
            })
            .collect()
    }

    fn node_set(&self) -> HashSet<String> {
        self.nodes.iter().map(|&n| node_name(n)).collect()
    }

    /// Allowed pools for a pod on `node`: the annotated one, or the automatic ones selecting it.
    fn allowed(&self, node: usize, annotated: Option<usize>) -> Vec<&'static str> {
        match annotated {
            Some(p) => vec![POOLS[p].0],
            None => POOLS
                .iter()
                .zip(&self.specs)
                .filter(|((_, _, _, sel), spec)| {
                    !spec.disabled
                        && match *sel {
                            "all()" => true,
                            "!all()" => false,
                            _ => node.is_multiple_of(2),
                        }
                })
                .map(|(p, _)| p.0)
                .collect(),
        }
    }

    fn record(&mut self, cid: String, node: usize, a: &Assignment, allowed: &[&str]) {
        let pool = self
            .ipam
            .pools()
            .find(|p| p.cidr.contains(&a.address))
            .expect("assigned inside a pool");
        assert!(
            allowed.contains(&pool.name.as_str()),
            "{} from pool {} not in allowed {allowed:?}",
            a.address,
            pool.name
        );
        assert!(!pool.disabled, "assigned from disabled pool {}", pool.name);
        assert!(
            !self.pods.values().any(|m| m.address == a.address),
            "{} given to two live pods",
            a.address
        );
        self.pods.insert(
            cid,
            LiveModel {
                address: a.address,
                node,
            },
        );
    }

    fn apply_lost(&mut self, lost: Vec<Op>) {
        for op in lost {
            let Some(h) = op.handle else { continue };
            let cid = h.strip_prefix(POD_HANDLE_PREFIX).unwrap_or(&h).to_string();
            let h = h.to_string();
            match op.kind {
                // The CNI ADD failed: the pod has no address.
                OpKind::Assign => {
                    if self.pods.get(&cid).is_some_and(|m| m.address == op.address) {
                        self.pods.remove(&cid);
                    }
                }
                // The release must be redone (the block is back at its persisted state).
                OpKind::Release => {
                    if !self.pods.contains_key(&cid) {
                        self.ipam.release_handle(&h);
                    }
                }
            }
        }
    }

    fn step(&mut self, s: Step) {
        self.now += Duration::from_secs(30);
        match s {
            Step::Claim { node, pool } => {
                if self.nodes.contains(&node) {
                    let _ = self
                        .ipam
                        .claim_block(&node_name(node), POOLS[pool].0, self.now);
                }
            }
            Step::Assign { node, annotated } => {
                if !self.nodes.contains(&node) {
                    return;
                }
                let cid = format!("pod{}", self.next_pod);
                self.next_pod += 1;
                let ns_ann: BTreeMap<String, String> = annotated
                    .map(|p| {
                        (
                            ANNOTATION_IPV4_POOLS.to_string(),
                            format!("[\"{}\"]", POOLS[p].0),
                        )
                    })
                    .into_iter()
                    .collect();
                let empty = BTreeMap::new();
                let node_labels = labels(node);
                let sel = match self.ipam.select_pools(&PodContext {
                    pod_annotations: &empty,
                    namespace_annotations: &ns_ann,
                    namespace_labels: None,
                    node_labels: &node_labels,
                }) {
                    Ok(s) => s,
                    Err(IpamError::PoolDisabled { .. }) => {
                        assert!(self.specs[annotated.unwrap()].disabled);
                        return;
                    }
                    Err(e) => panic!("unexpected selection error {e}"),
                };
                let allowed = self.allowed(node, annotated);
                let req = AssignRequest::pod(&cid, "ns", &cid, &node_name(node), self.now);
                let mut r = self.ipam.auto_assign(&req, Family::V4, &sel.v4);
                // The operator answers demand by claiming a block; the agent retries once.
                if let Err(IpamError::NeedBlock { node: n, pool }) = &r {
                    assert!(allowed.contains(&pool.as_str()));
                    if self.ipam.claim_block(n, pool, self.now).is_ok() {
                        r = self.ipam.auto_assign(&req, Family::V4, &sel.v4);
                    }
                }
                *self
                    .stats
                    .entry(match &r {
                        Ok(a) if a.borrowed => "borrowed",
                        Ok(_) => "assigned",
                        Err(IpamError::BlockLimit { .. }) => "block-limit",
                        Err(IpamError::PoolsExhausted { .. }) => "exhausted",
                        Err(_) => "other-error",
                    })
                    .or_default() += 1;
                match r {
                    Ok(a) => self.record(cid, node, &a, &allowed),
                    Err(
                        IpamError::NeedBlock { .. }
                        | IpamError::BlockLimit { .. }
                        | IpamError::PoolsExhausted { .. }
                        | IpamError::NoPoolForNode { .. },
                    ) => {}
                    Err(e) => panic!("unexpected assign error {e}"),
                }
            }
            Step::Explicit { node, offset } => {
                if !self.nodes.contains(&node) {
                    return;
                }
                // 10.{0,1,2,3}.0.{0..127}: inside each pool, past its end, and in no pool at all.
                let addr = IpAddr::from([10, (offset % 4) as u8, 0, (offset >> 2) as u8 & 127]);
                let cid = format!("pod{}", self.next_pod);
                self.next_pod += 1;
                let req = AssignRequest::pod(&cid, "ns", &cid, &node_name(node), self.now);
                let in_use = self.pods.values().any(|m| m.address == addr);
                let enabled_pool = POOLS
                    .iter()
                    .zip(&self.specs)
                    .find(|((_, c, _, _), s)| {
                        !s.disabled && c.parse::<ipnet::IpNet>().unwrap().contains(&addr)
                    })
                    .map(|(p, _)| p.0);
                match self.ipam.assign_address(&req, addr, self.now) {
                    Ok(a) => {
                        assert_eq!(a.address, addr);
                        self.record(
                            cid,
                            node,
                            &a,
                            &[enabled_pool.expect("inside an enabled pool")],
                        );
                    }
                    Err(IpamError::AddressInUse { .. }) => {
                        assert!(in_use || self.ipam.address_owner(addr).is_some())
                    }
                    Err(IpamError::AddressOutsidePools { .. }) => assert!(enabled_pool.is_none()),
                    Err(
                        IpamError::NotAffine { .. }
                        | IpamError::BlockLimit { .. }
                        | IpamError::InvalidBlock { .. },
                    ) => {}
                    Err(e) => panic!("unexpected explicit error {e}"),
                }
            }
            Step::Release { pick, twice } => {
                let mut cids: Vec<&String> = self.pods.keys().collect();
                cids.sort();
                if cids.is_empty() {
                    return;
                }
                let cid = cids[pick % cids.len()].clone();
                let m = self.pods.remove(&cid).unwrap();
                let h = pod_handle(&cid);
                assert_eq!(self.ipam.release_handle(&h), vec![m.address]);
                if twice {
                    assert!(
                        self.ipam.release_handle(&h).is_empty(),
                        "release is idempotent"
                    );
                }
            }
            Step::ReleaseAddress { pick } => {
                let mut cids: Vec<&String> = self.pods.keys().collect();
                cids.sort();
                if cids.is_empty() {
                    return;
                }
                let cid = cids[pick % cids.len()].clone();
                let m = self.pods.remove(&cid).unwrap();
                assert_eq!(self.ipam.release_address(m.address), Some(pod_handle(&cid)));
                assert_eq!(self.ipam.release_address(m.address), None);
            }
            Step::Commit { fail_mask } => {
                let writes = self.ipam.prepare_commit();
                for (i, w) in writes.iter().enumerate() {
                    if fail_mask & (1 << (i % 64)) != 0 && fail_mask % 3 == 0 {
                        assert_eq!(self.ipam.lost_by(&w.cidr), w.ops);
                        let lost = self.ipam.rollback(&w.cidr);
                        *self.stats.entry("lost-ops").or_default() += lost.len();
                        assert_eq!(lost, w.ops, "a failed write loses exactly its ops");
                        self.apply_lost(lost);
                    } else {
                        self.ipam.commit_succeeded(&w.cidr, w.sequence).unwrap();
                    }
                }
            }
            Step::DeleteNode { node } => {
                if !self.nodes.remove(&node) {
                    return;
                }
                self.pods.retain(|_, m| m.node != node);
                self.gc(true);
                // Its pods' addresses are released at once (check_invariants finds any left); its
                // blocks wait out the grace period, as gc() checks: the node may come back.
            }
            Step::RestoreNode { node } => {
                if self.nodes.insert(node) {
                    *self.stats.entry("restored").or_default() += 1;
                }
            }
            Step::TogglePool { pool } => {
                self.specs[pool].disabled = !self.specs[pool].disabled;
                self.ipam
                    .upsert_pool(POOLS[pool].0, &self.specs[pool])
                    .unwrap();
            }
            Step::Gc => self.gc(false),
        }
    }

    fn gc(&mut self, commit: bool) {
        let pods = self.live_pods();
        let nodes = self.node_set();
        for n in 0..NODES {
            if self.nodes.contains(&n) || self.ipam.node_blocks(&node_name(n)).is_empty() {
                self.gone_seen.remove(&n);
            } else {
                self.gone_seen.entry(n).or_insert(self.now);
            }
        }
        let grace = DEFAULT_LEAK_GRACE;
        let d = self
            .ipam
            .gc(&GcInput::new(&pods, &nodes, self.now), &self.gc_state);
        let live: HashSet<String> = self.pods.keys().map(|c| pod_handle(c)).collect();
        for r in &d.release {
            assert!(
                !live.contains(&r.handle),
                "GC released live pod {}",
                r.handle
            );
            self.ipam.release_handle(&r.handle);
        }
        let owner = |ipam: &Ipam, cidr: &ipnet::IpNet| -> Option<usize> {
            let n = ipam.block(cidr)?.node()?;
            n.strip_prefix("node-")?.parse().ok()
        };
        let freed: HashSet<ipnet::IpNet> = d.free_blocks.iter().map(|f| f.cidr).collect();
        for f in &d.free_blocks {
            if let Some(n) = owner(&self.ipam, &f.cidr)
                && !self.nodes.contains(&n)
            {
                // A deleted node's block goes only after the node has been gone for the grace period.
                let since = self.gone_seen[&n];
                assert!(
                    self.now.duration_since(since).unwrap() >= grace,
                    "block {} of node {n} freed {:?} after it went",
                    f.cidr,
                    self.now.duration_since(since)
                );
                *self.stats.entry("gone-node-block-freed").or_default() += 1;
            }
        }
        // ...and then it does go, once empty.
        for b in self.ipam.blocks() {
            if let Some(n) = owner(&self.ipam, &b.cidr())
                && let Some(since) = self.gone_seen.get(&n)
                && self.now.duration_since(*since).unwrap() >= grace
                && b.is_empty()
            {
                assert!(
                    freed.contains(&b.cidr()),
                    "empty block {} of node {n} kept",
                    b.cidr()
                );
            }
        }
        for f in &d.free_blocks {
            self.ipam.free_block(&f.cidr).unwrap();
        }
        self.gc_state = d.state;
        if commit {
            for w in self.ipam.prepare_commit() {
                self.ipam.commit_succeeded(&w.cidr, w.sequence).unwrap();
            }
        }
    }

    fn check_invariants(&self) {
        let mut seen: HashMap<IpAddr, String> = HashMap::new();
        let limit = self.ipam.config().block_limit() as usize;
        let mut prev: Option<ipnet::IpNet> = None;
        for b in self.ipam.blocks() {
            // allocated + free = size, and the CRD mapping is lossless.
            let allocated = b.allocations().count() as u32;
            let free = b.unallocated().count() as u32;
            assert_eq!(allocated + free, b.size(), "block {}", b.cidr());
            assert_eq!(&Block::from_spec(&b.to_spec()).unwrap(), b);
            let pool = self
                .ipam
                .pool_of(&b.cidr())
                .expect("blocks stay inside pools");
            assert_eq!(pool.block_size, b.cidr().prefix_len());
            if let Some(p) = prev {
                assert!(
                    !p.contains(&b.cidr().network()),
                    "blocks {p} and {} overlap",
                    b.cidr()
                );
            }
            prev = Some(b.cidr());
            for (o, a) in b.allocations() {
                let h = a.handle().unwrap().to_string();
                assert!(
                    seen.insert(b.address(o), h).is_none(),
                    "address allocated twice"
                );
            }
        }
        for (cid, m) in &self.pods {
            assert_eq!(
                self.ipam.handle_addresses(&pod_handle(cid)),
                vec![m.address],
                "live pod {cid} lost its address"
            );
        }
        // No stray allocations: every allocated address belongs to a live pod of the model.
        assert_eq!(seen.len(), self.pods.len(), "allocations {seen:?} vs pods");
        // Calico's limit counts the node's blocks in the pools usable for a request; a claim is a
        // request for one pool, so no node ever holds more than the limit in any one pool.
        for n in 0..NODES {
            let owned = self.ipam.node_blocks(&node_name(n));
            for p in self.ipam.pools() {
                let in_pool = owned.iter().filter(|b| p.cidr.contains(*b)).count();
                assert!(
                    in_pool <= limit,
                    "node {n} holds {in_pool} blocks of {}",
                    p.name
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn ipam_invariants(
        strict in any::<bool>(),
        max_blocks in 0u32..4,
        steps in prop::collection::vec(step(), 1..120),
    ) {
        let mut w = World::new(strict, max_blocks);
        for s in steps {
            w.step(s);
            w.check_invariants();
        }
        // Everything committed in the end matches the model too.
        for wr in w.ipam.prepare_commit() {
            w.ipam.commit_succeeded(&wr.cidr, wr.sequence).unwrap();
        }
        w.check_invariants();
        if std::env::var("IPAM_PROP_STATS").is_ok() {
            eprintln!("pods={} blocks={} {:?}", w.pods.len(), w.ipam.block_count(), w.stats);
        }
    }
}
