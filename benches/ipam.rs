//! IPAM engine benchmarks (issue 5): assign+release, block choice and GC at 5,000 nodes / 150,000 pods,
//! and the model's memory at that size, measured with a counting global allocator.
use std::collections::HashSet;
use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use ocelot::api::ippool::IPPoolSpec;
use ocelot::ipam::*;

mod common;
use common::LIVE;

const NODES: usize = 5_000;
const PODS_PER_NODE: usize = 30;
const POOL: &str = "default-ipv4-ippool";

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn pools() -> FamilyPools {
    FamilyPools {
        pools: vec![POOL.into()],
        source: PoolSource::NodeSelector,
    }
}

fn new_ipam() -> Ipam {
    let mut ipam = Ipam::new(IpamConfig::default());
    // A /12 holds 16,384 /26 blocks: room for 5,000 nodes' blocks and for new claims.
    let spec = IPPoolSpec {
        cidr: "10.0.0.0/12".into(),
        ..IPPoolSpec::default()
    };
    ipam.upsert_pool(POOL, &spec).unwrap();
    ipam
}

fn container_id(node: usize, pod: usize) -> String {
    // 64 hex characters, as a real containerd ID.
    format!("{:064x}", (node as u128) << 32 | pod as u128)
}

/// 5,000 nodes with one /26 each and 30 pods each (150,000 allocations), all committed.
fn cluster() -> (Ipam, Vec<LivePod>, HashSet<String>) {
    let mut ipam = new_ipam();
    let fp = pools();
    let mut pods = Vec::with_capacity(NODES * PODS_PER_NODE);
    for n in 0..NODES {
        let node = format!("node-{n:05}");
        ipam.claim_block(&node, POOL, now()).unwrap();
        for p in 0..PODS_PER_NODE {
            let cid = container_id(n, p);
            let name = format!("app-{n}-{p}");
            let req = AssignRequest::pod(&cid, "default", &name, &node, now());
            let a = ipam.auto_assign(&req, Family::V4, &fp).unwrap();
            pods.push(LivePod {
                namespace: "default".into(),
                name,
                node: node.clone(),
                container_id: Some(cid),
                ips: vec![a.address],
            });
        }
        for w in ipam.prepare_commit() {
            ipam.commit_succeeded(&w.cidr, w.sequence).unwrap();
        }
    }
    let nodes = (0..NODES).map(|n| format!("node-{n:05}")).collect();
    (ipam, pods, nodes)
}

fn bench(c: &mut Criterion) {
    // Memory of the model at 5,000 nodes / 150,000 allocations.
    let before = LIVE.load(Ordering::Relaxed);
    let mut ipam = {
        let (ipam, pods, nodes) = cluster();
        drop((pods, nodes));
        ipam
    };
    let model = LIVE.load(Ordering::Relaxed) - before;
    println!(
        "ipam model memory: {:.1} MiB for {} blocks, {} handles ({} bytes per allocation)",
        model as f64 / (1024.0 * 1024.0),
        ipam.block_count(),
        ipam.handle_count(),
        model / (NODES * PODS_PER_NODE)
    );

    // Assign + release on one node's block, committing every 100 pairs (group commit amortised).
    {
        let mut small = new_ipam();
        small.claim_block("node-a", POOL, now()).unwrap();
        let fp = pools();
        let req = AssignRequest::pod(&container_id(1, 1), "default", "web-0", "node-a", now());
        let mut i = 0u32;
        c.bench_function("assign+release (1 node, commit every 100)", |b| {
            b.iter(|| {
                let a = small.auto_assign(black_box(&req), Family::V4, &fp).unwrap();
                black_box(small.release_handle(&req.handle));
                i += 1;
                if i.is_multiple_of(100) {
                    for w in small.prepare_commit() {
                        small.commit_succeeded(&w.cidr, w.sequence).unwrap();
                    }
                }
                a.address
            })
        });
        c.bench_function("assign+release+commit each (1 node)", |b| {
            b.iter(|| {
                let a = small.auto_assign(black_box(&req), Family::V4, &fp).unwrap();
                black_box(small.release_handle(&req.handle));
                for w in small.prepare_commit() {
                    small.commit_succeeded(&w.cidr, w.sequence).unwrap();
                }
                a.address
            })
        });
    }

    // The same in the big model (larger maps), on a node whose block has room.
    {
        let fp = pools();
        let req = AssignRequest::pod(&container_id(9, 9), "default", "web-9", "node-02500", now());
        c.bench_function("assign+release (5,000 nodes, 150k allocations)", |b| {
            b.iter(|| {
                let a = ipam.auto_assign(black_box(&req), Family::V4, &fp).unwrap();
                black_box(ipam.release_handle(&req.handle));
                a.address
            })
        });
        for w in ipam.prepare_commit() {
            ipam.commit_succeeded(&w.cidr, w.sequence).unwrap();
        }
    }

    // Choosing a block for a new node in a pool that already has 5,000 blocks.
    {
        let mut k = 0usize;
        c.bench_function("choose block (5,000 nodes, 150k allocations)", |b| {
            b.iter(|| {
                k += 1;
                black_box(ipam.find_free_block(POOL, &format!("new-node-{k}")))
            })
        });
    }

    // GC decision over 5,000 nodes and 150,000 live pods (nothing to release: the full scan).
    {
        let (ipam, pods, nodes) = cluster();
        let state = GcState::default();
        let mut g = c.benchmark_group("gc");
        g.sample_size(10);
        g.bench_function("gc decision (5,000 nodes, 150k pods)", |b| {
            b.iter(|| black_box(ipam.gc(&GcInput::new(&pods, &nodes, now()), &state)))
        });
        // And with 10% of pods deleted and one node gone (15,000+ candidates tracked).
        let fewer: Vec<LivePod> = pods
            .iter()
            .enumerate()
            .filter(|(i, p)| i % 10 != 0 && p.node != "node-00000")
            .map(|(_, p)| p.clone())
            .collect();
        let mut less_nodes = nodes.clone();
        less_nodes.remove("node-00000");
        g.bench_function("gc decision (10% pods gone, 1 node gone)", |b| {
            b.iter(|| black_box(ipam.gc(&GcInput::new(&fewer, &less_nodes, now()), &state)))
        });
        // What the operator's Calico Node pass scans each time: every allocation, for the ones
        // held outside their node's blocks (none here, so the whole cost is the scan).
        g.bench_function("borrowed addresses (5,000 nodes, 150k allocations)", |b| {
            b.iter(|| black_box(ipam.borrowed_addresses()))
        });
        g.finish();
        let d = ipam.gc(&GcInput::new(&fewer, &less_nodes, now()), &state);
        println!(
            "gc with 10% pods gone: release {} handles now, {} candidates in grace, free {} blocks",
            d.release.len(),
            d.state.leak_first_seen.len(),
            d.free_blocks.len()
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
