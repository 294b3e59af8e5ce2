//! Tests of [`super::plan`] and the route values.
use super::*;
use proptest::prelude::*;
use std::collections::BTreeSet;

const OWN: u8 = OCELOT_PROTOCOL;

fn own() -> Ownership {
    Ownership::default()
}

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn foreign(mut r: Route, protocol: u8) -> Route {
    r.protocol = protocol;
    r
}

/// The kernel's behaviour for a plan: deletes remove the exact route, adds replace whatever
/// sits at their key (the first route there) or create it.
fn apply(current: &[Route], plan: &RoutePlan) -> Vec<Route> {
    let mut table: Vec<Route> = current
        .iter()
        .filter(|r| !plan.delete.contains(r))
        .cloned()
        .collect();
    for add in &plan.add {
        match table.iter_mut().find(|r| r.key() == add.key()) {
            Some(slot) => *slot = add.clone(),
            None => table.push(add.clone()),
        }
    }
    table
}

fn set(routes: &[Route]) -> BTreeSet<Route> {
    routes.iter().cloned().collect()
}

#[test]
fn adopts_identical_routes_and_deletes_only_our_stale_ones() {
    let pod = Route::pod(Ipv4Addr::new(10, 0, 0, 1), "cali1");
    let hole = Route::blackhole(net("10.0.0.0/26"));
    let stale = Route::pod(Ipv4Addr::new(10, 0, 0, 2), "cali2");
    let bird = foreign(
        Route::via(net("10.1.0.0/26"), Ipv4Addr::new(192, 0, 2, 2), "ens4"),
        RTPROT_BIRD,
    );
    // `ip route add 10.0.0.3 dev eth9` is also proto boot, but not on a pod interface.
    let admin = foreign(Route::pod(Ipv4Addr::new(10, 0, 0, 3), "eth9"), RTPROT_BOOT);
    let current = vec![pod.clone(), hole.clone(), stale.clone(), bird, admin];
    let p = plan(&[pod, hole], &current, &own());
    assert_eq!(p.add, vec![]);
    assert_eq!(p.delete, vec![stale]);
    assert!(p.conflicts.is_empty());
}

#[test]
fn pod_routes_use_the_device_protocol_and_are_owned_by_protocol_and_prefix() {
    let own = Ownership::new(RTPROT_BOOT, "cali,tap");
    let pod = Route::pod(Ipv4Addr::new(198, 19, 22, 129), "cali1e6904b30ae");
    let p = plan(std::slice::from_ref(&pod), &[], &own);
    assert_eq!(p.add[0].protocol, RTPROT_BOOT, "ip route shows no proto");
    assert_eq!(
        p.add[0].to_string(),
        "198.19.22.129/32 dev cali1e6904b30ae scope link table 254 metric 0 proto 3"
    );
    let tap = Route::pod(Ipv4Addr::new(198, 19, 22, 130), "tap0");
    let admin = Route::pod(Ipv4Addr::new(198, 19, 22, 131), "eth1");
    assert!(
        own.owns(&pod) && own.owns(&tap),
        "every prefix of the list counts"
    );
    assert!(
        !own.owns(&admin),
        "an admin's boot route on eth1 is not ours"
    );
    let p = plan(&[], &[pod.clone(), tap.clone(), admin], &own);
    assert_eq!(
        p.delete,
        vec![pod.clone(), tap],
        "stale pod routes go, the admin's stays"
    );
    let d = crate::desired::dataplane_settings(&Default::default());
    assert_eq!(Ownership::for_dataplane(&d), Ownership::default());
    // A configured deviceRouteProtocol: the pod route is rewritten, and the old boot one is
    // no longer ours.
    let own80 = Ownership::new(80, "cali");
    let p = plan(std::slice::from_ref(&pod), &[], &own80);
    assert_eq!(p.add[0].protocol, 80);
    assert!(!own80.owns(&pod));
}

#[test]
fn replaces_our_route_when_it_changed() {
    let old = Route::pod(Ipv4Addr::new(10, 0, 0, 1), "cali1");
    let new = Route::pod(Ipv4Addr::new(10, 0, 0, 1), "cali9");
    let p = plan(std::slice::from_ref(&new), &[old], &own());
    assert_eq!(p.add, vec![new]);
    assert!(p.delete.is_empty());
}

#[test]
fn onlink_is_part_of_the_route_so_a_plain_via_is_replaced() {
    let block = net("198.19.22.192/26");
    let tunnel = Route::via_onlink(block, Ipv4Addr::new(198, 19, 22, 192), "vxlan.calico");
    assert_eq!(
        tunnel.to_string(),
        "198.19.22.192/26 via 198.19.22.192 dev vxlan.calico onlink table 254 metric 0 proto 79"
    );
    let plain = Route::via(block, Ipv4Addr::new(198, 19, 22, 192), "vxlan.calico");
    assert_ne!(tunnel, plain);
    assert_eq!(tunnel.dev(), Some("vxlan.calico"));
    assert_eq!(Route::blackhole(block).dev(), None);
    assert_eq!(tunnel.key(), plain.key());
    let p = plan(std::slice::from_ref(&tunnel), &[plain], &own());
    assert_eq!(
        p.add,
        vec![tunnel],
        "the onlink route replaces the plain one"
    );
    assert!(p.delete.is_empty());
}

#[test]
fn never_overwrites_a_foreign_route_at_the_same_key() {
    let bird = foreign(
        Route::via(net("10.0.0.0/26"), Ipv4Addr::new(192, 0, 2, 2), "ens4"),
        RTPROT_BIRD,
    );
    let wanted = Route::blackhole(net("10.0.0.0/26"));
    let p = plan(
        std::slice::from_ref(&wanted),
        std::slice::from_ref(&bird),
        &own(),
    );
    assert!(p.is_empty());
    assert_eq!(
        p.conflicts,
        vec![Conflict {
            wanted,
            occupant: bird
        }]
    );
}

#[test]
fn stamps_our_protocol_and_network_address_on_desired_routes() {
    let mut r = Route::blackhole(net("10.0.0.0/26"));
    r.protocol = RTPROT_STATIC;
    r.dst = net("10.0.0.5/26");
    let p = plan(&[r], &[], &own());
    assert_eq!(p.add, vec![Route::blackhole(net("10.0.0.0/26"))]);
}

#[test]
fn duplicate_desired_keys_keep_the_first() {
    let a = Route::pod(Ipv4Addr::new(10, 0, 0, 1), "cali1");
    let b = Route::pod(Ipv4Addr::new(10, 0, 0, 1), "cali2");
    let p = plan(&[a.clone(), b.clone()], &[], &own());
    assert_eq!(p.add, vec![a.clone()]);
    assert_eq!(
        p.conflicts,
        vec![Conflict {
            wanted: b,
            occupant: a
        }]
    );
}

#[test]
fn other_routes_of_ours_are_replaced_or_deleted() {
    let mut odd = Route::pod(Ipv4Addr::new(10, 0, 0, 1), "cali1");
    odd.kind = RouteKind::Other("unreachable".into());
    odd.protocol = OWN;
    let mut odd2 = odd.clone();
    odd2.dst = net("10.0.0.2/32");
    let want = Route::pod(Ipv4Addr::new(10, 0, 0, 1), "cali1");
    let p = plan(std::slice::from_ref(&want), &[odd, odd2.clone()], &own());
    assert_eq!(p.add, vec![want]);
    assert_eq!(p.delete, vec![odd2]);
}

fn arb_kind() -> impl Strategy<Value = RouteKind> {
    prop_oneof![
        (0u8..3, 0u8..2, any::<bool>()).prop_map(|(g, d, onlink)| RouteKind::Via {
            gateway: Ipv4Addr::new(192, 0, 2, g),
            dev: format!("eth{d}"),
            onlink,
        }),
        (0u8..3).prop_map(|d| RouteKind::Link {
            dev: format!("cali{d}")
        }),
        Just(RouteKind::Blackhole),
        Just(RouteKind::Other("unreachable".into())),
    ]
}

/// Routes over a small key space, so keys collide often.
fn arb_route(protocols: &'static [u8]) -> impl Strategy<Value = Route> {
    (
        0u8..12,
        prop_oneof![Just(32u8), Just(26u8)],
        arb_kind(),
        prop_oneof![Just(RT_TABLE_MAIN), Just(100u32)],
        prop_oneof![Just(0u32), Just(10u32)],
        proptest::sample::select(protocols),
    )
        .prop_map(|(host, len, kind, table, metric, protocol)| Route {
            dst: Ipv4Net::new(Ipv4Addr::new(10, 0, 0, host * 16), len)
                .unwrap()
                .trunc(),
            kind,
            table,
            metric,
            protocol,
        })
}

/// At most one route per key, as the kernel holds them.
fn unique_keys(routes: Vec<Route>) -> Vec<Route> {
    let mut seen = HashSet::new();
    routes
        .into_iter()
        .filter(|r| seen.insert(r.key()))
        .collect()
}

fn stamped(own: &Ownership, mut r: Route) -> Route {
    r.protocol = own.protocol_for(&r);
    r
}

fn is_desirable(r: &Route) -> bool {
    !matches!(r.kind, RouteKind::Other(_))
}

proptest! {
    #[test]
    fn applying_the_plan_gives_desired_plus_foreign(
        desired in proptest::collection::vec(arb_route(&[OWN]), 0..20),
        ours in proptest::collection::vec(arb_route(&[OWN]), 0..20),
        others in proptest::collection::vec(arb_route(&[RTPROT_KERNEL, RTPROT_BOOT, RTPROT_BIRD]), 0..20),
    ) {
        let own = own();
        let desired: Vec<Route> = unique_keys(desired.into_iter().filter(is_desirable).map(|r| stamped(&own, r)).collect());
        let desired_keys: HashSet<RouteKey> = desired.iter().map(Route::key).collect();
        // Foreign routes on free keys: the case the plan can fully realise.
        let foreign: Vec<Route> = others.into_iter().filter(|r| !own.owns(r) && !desired_keys.contains(&r.key())).collect();
        let ours = ours.into_iter().map(|r| stamped(&own, r));
        let current = unique_keys(foreign.iter().cloned().chain(ours).collect());
        let foreign: Vec<Route> = current.iter().filter(|r| !own.owns(r)).cloned().collect();

        let p = plan(&desired, &current, &own);
        prop_assert!(p.conflicts.is_empty());
        prop_assert!(p.delete.iter().all(|r| own.owns(r)));
        prop_assert!(p.add.iter().all(|r| !current.contains(r)), "adopted routes are not rewritten");
        let after = apply(&current, &p);
        prop_assert_eq!(after.len(), set(&after).len());
        let expected: BTreeSet<Route> = desired.iter().chain(&foreign).cloned().collect();
        prop_assert_eq!(set(&after), expected);
        prop_assert!(plan(&desired, &after, &own).is_empty(), "idempotent");
    }

    #[test]
    fn foreign_routes_survive_any_plan(
        desired in proptest::collection::vec(arb_route(&[OWN]), 0..20),
        current in proptest::collection::vec(arb_route(&[OWN, RTPROT_KERNEL, RTPROT_BOOT, RTPROT_BIRD]), 0..30),
    ) {
        let own = own();
        let current = unique_keys(current);
        let p = plan(&desired, &current, &own);
        let after = apply(&current, &p);
        for r in current.iter().filter(|r| !own.owns(r)) {
            prop_assert!(after.contains(r), "{r} was touched");
        }
        // Every desired key is ours after applying, or reported.
        for d in &desired {
            let mine = after.iter().any(|r| r.key() == d.key() && own.owns(r));
            let reported = p.conflicts.iter().any(|c| c.wanted.key() == d.key());
            prop_assert!(mine || reported, "{d} neither applied nor reported");
        }
        prop_assert!(plan(&desired, &after, &own).is_empty(), "idempotent");
    }

    #[test]
    fn plan_of_desired_against_itself_is_empty(
        desired in proptest::collection::vec(arb_route(&[OWN]), 0..30),
    ) {
        let own = own();
        let desired = unique_keys(desired.into_iter().map(|r| stamped(&own, r)).collect());
        let p = plan(&desired, &desired, &own);
        prop_assert!(p.is_empty() && p.conflicts.is_empty());
    }
}
