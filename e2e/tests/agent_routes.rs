//! The agent's route layer against a real kernel, in a lab netns. Needs root (as CI runs).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ocelot::routes::{Ownership, RT_TABLE_MAIN, RTPROT_BIRD, Route, RouteKind, plan};
use ocelot_agent::routes::{Op, RouteNetlink};
use ocelot_e2e::lab::{Lab, Netns, require_root, require_tools};

const VETH: &str = "cali0test";

fn node(lab: &mut Lab) -> Netns {
    let ns = lab.add_netns("routes").expect("netns");
    for args in [
        vec![
            "ip", "link", "add", VETH, "type", "veth", "peer", "name", "peer0",
        ],
        vec!["ip", "link", "set", VETH, "up"],
        vec!["ip", "link", "set", "peer0", "up"],
    ] {
        ns.exec_ok(args).expect("veth");
    }
    ns
}

fn pods(n: u32) -> Vec<Route> {
    let base = u32::from(Ipv4Addr::new(10, 65, 0, 0));
    (1..=n)
        .map(|i| Route::pod(Ipv4Addr::from(base + i), VETH))
        .collect()
}

fn ours(routes: &[Route]) -> BTreeSet<Route> {
    routes
        .iter()
        .filter(|r| Ownership::default().owns(r))
        .cloned()
        .collect()
}

#[tokio::test]
async fn routes_apply_adopt_and_leave_foreign_routes_alone() {
    require_root().expect("the route test needs root (it creates a netns)");
    require_tools(&["ip"]).expect("the route test needs ip");
    let mut lab = Lab::new().expect("lab");
    let ns = node(&mut lab);
    let nl = RouteNetlink::connect_in_netns(&ns.path()).expect("netlink in netns");

    let mut desired = pods(200);
    desired.push(Route::blackhole("10.65.0.0/24".parse().unwrap()));

    // First apply: everything is new.
    let current = nl.list(RT_TABLE_MAIN).await.expect("list");
    let p = plan(&desired, &current, &Ownership::default());
    assert_eq!((p.add.len(), p.delete.len()), (201, 0));
    let report = nl.apply(&p).await;
    assert!(report.is_ok(), "{:?}", report.failures);
    assert_eq!(report.added, 201);
    // Pod routes carry deviceRouteProtocol boot, which ip does not print: the seed's lines.
    let shown = ns.exec_ok(["ip", "route", "show", "dev", VETH]).unwrap();
    assert_eq!(shown.lines().count(), 200, "{shown}");
    assert!(
        shown
            .lines()
            .any(|l| l.trim_end() == "10.65.0.7 scope link"),
        "{shown}"
    );
    let all = ns.exec_ok(["ip", "route"]).unwrap();
    assert!(
        all.lines()
            .any(|l| l.trim_end() == "10.65.0.7 dev cali0test scope link"),
        "{all}"
    );
    let shown = ns.exec_ok(["ip", "route", "show", "proto", "79"]).unwrap();
    assert_eq!(shown.lines().count(), 1, "{shown}");
    assert!(shown.contains("blackhole 10.65.0.0/24"), "{shown}");

    // Foreign routes: BIRD's, and the admin's (`ip route add` defaults to proto boot).
    ns.exec_ok([
        "ip",
        "route",
        "add",
        "10.66.0.0/24",
        "dev",
        "peer0",
        "proto",
        "bird",
    ])
    .unwrap();
    ns.exec_ok(["ip", "route", "add", "10.67.0.0/24", "dev", "peer0"])
        .unwrap();

    // A restart: a fresh socket adopts what the kernel holds, nothing to write.
    let nl = RouteNetlink::connect_in_netns(&ns.path()).expect("netlink in netns");
    let current = nl.list(RT_TABLE_MAIN).await.expect("list");
    assert_eq!(ours(&current), desired.iter().cloned().collect());
    let p = plan(&desired, &current, &Ownership::default());
    assert!(p.is_empty() && p.conflicts.is_empty(), "{p:?}");
    let bird = current
        .iter()
        .find(|r| r.dst == "10.66.0.0/24".parse().unwrap())
        .expect("bird's route listed");
    assert_eq!(bird.protocol, RTPROT_BIRD);
    assert_eq!(
        bird.kind,
        RouteKind::Link {
            dev: "peer0".into()
        }
    );

    // Half the pods go: exactly their routes are deleted.
    let kept: Vec<Route> = desired[100..].to_vec();
    let p = plan(&kept, &current, &Ownership::default());
    assert!(p.add.is_empty());
    assert_eq!(
        p.delete.iter().cloned().collect::<BTreeSet<_>>(),
        desired[..100].iter().cloned().collect()
    );
    let report = nl.apply(&p).await;
    assert!(report.is_ok(), "{:?}", report.failures);
    assert_eq!((report.deleted, report.already_gone), (100, 0));
    let after = nl.list(RT_TABLE_MAIN).await.expect("list");
    assert_eq!(ours(&after), kept.iter().cloned().collect());
    let shown = ns.exec_ok(["ip", "route"]).unwrap();
    assert!(
        shown.contains("10.66.0.0/24 dev peer0 proto bird"),
        "{shown}"
    );
    assert!(shown.contains("10.67.0.0/24 dev peer0"), "{shown}");
    assert!(plan(&kept, &after, &Ownership::default()).is_empty());

    // Deleting again: "not found" is done, not an error.
    let report = nl.apply(&p).await;
    assert!(report.is_ok(), "{:?}", report.failures);
    assert_eq!((report.deleted, report.already_gone), (0, 100));

    // A desired route on BIRD's slot is reported, never forced; a missing device fails alone.
    let mut wanted = kept.clone();
    wanted.push(Route::blackhole("10.66.0.0/24".parse().unwrap()));
    wanted.push(Route::pod(Ipv4Addr::new(10, 68, 0, 1), "cali-missing"));
    let p = plan(&wanted, &after, &Ownership::default());
    assert_eq!(p.conflicts.len(), 1);
    assert_eq!(p.conflicts[0].occupant.protocol, RTPROT_BIRD);
    let report = nl.apply(&p).await;
    assert_eq!(report.added, 0);
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    assert_eq!(report.failures[0].op, Op::Add);
    assert_eq!(
        report.failures[0].route.dst,
        "10.68.0.1/32".parse().unwrap()
    );
    let shown = ns.exec_ok(["ip", "route"]).unwrap();
    assert!(
        shown.contains("10.66.0.0/24 dev peer0 proto bird"),
        "{shown}"
    );

    // Nothing desired: all of ours goes, foreign routes stay.
    let current = nl.list(RT_TABLE_MAIN).await.expect("list");
    let report = nl.apply(&plan(&[], &current, &Ownership::default())).await;
    assert!(report.is_ok(), "{:?}", report.failures);
    assert_eq!(report.deleted, 101);
    let left = nl.list(RT_TABLE_MAIN).await.expect("list");
    assert!(ours(&left).is_empty());
    assert_eq!(
        left.iter()
            .filter(|r| r.dst.prefix_len() == 24 && r.dst.addr().octets()[1] >= 66)
            .count(),
        2,
        "{left:?}"
    );
}
