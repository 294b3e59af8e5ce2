//! Two `ocelot-operator` processes against the real kube-apiserver: only the Lease holder writes;
//! SIGKILLing it hands over within the lease duration, and the new leader's first reconcile makes
//! no write the old leader had already made (counted from the API server's metrics).
use std::time::{Duration, Instant};

use ocelot_e2e::operator::{Operator, api_writes, apply, get_json, op_log_line};

const LEASE_SECONDS: u64 = 4;

fn args(_: &str) -> Vec<&'static str> {
    vec![
        "--default-ipv4-pool-cidr",
        "198.19.16.0/21",
        "--lease-seconds",
        "4",
        "--resync-seconds",
        "1",
        "--leader-election-namespace",
        "default",
    ]
}

#[test]
fn only_the_leader_writes_and_a_killed_leader_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    for node in ["node1", "node2"] {
        apply(&format!(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: {node}\n"
        ));
    }
    let (log_a, log_b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let mut a = Operator::start_with(&log_a, &args("a"));
    a.wait("a to lead", || op_log_line(&log_a, "became leader"));
    let mut b = Operator::start_with(&log_b, &args("b"));
    b.wait("b to sync as a follower", || {
        op_log_line(&log_b, "listed kind=NodeNetworkState")
    });
    a.wait("a to write both states", || {
        for n in ["node1", "node2"] {
            get_json("nodenetworkstates.ocelot.dev", n)?;
        }
        Ok(())
    });
    // Settled: a's passes write nothing more; b never wrote.
    std::thread::sleep(Duration::from_secs(3));
    let settled = api_writes();
    let b_log = b.log();
    assert!(!b_log.contains("became leader"), "{b_log}");
    assert!(
        !b_log.contains("applied node="),
        "the follower wrote: {b_log}"
    );

    a.kill();
    let killed = Instant::now();
    b.wait("b to take over", || op_log_line(&log_b, "became leader"));
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(LEASE_SECONDS * 3),
        "handover took {took:?} with a {LEASE_SECONDS} s lease"
    );
    b.wait("b's first reconcile as leader", || {
        op_log_line(&log_b, "initial reconcile done")
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        settled,
        api_writes(),
        "the new leader rewrote what the old one had written; log:\n{}",
        b.log()
    );
    let line = op_log_line(&log_b, "initial reconcile done").unwrap();
    assert!(line.contains("applied=0"), "{line}");
    b.stop();
}
