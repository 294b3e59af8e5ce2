//! Kernel routes as values, and the plan that turns the kernel's routes into the desired ones.
//!
//! Ownership ([`Ownership`]) is read from the route itself, so no state file is needed to know what
//! is ours after a restart:
//! - pod routes (`<ip> dev cali… scope link`) carry FelixConfiguration `deviceRouteProtocol`
//!   (default 3, `boot`, which `ip route` does not print, so node1 shows the seed's
//!   `198.19.22.129 dev cali1e6904b30ae scope link`), and are ours only when their device also has
//!   one of the pod interface prefixes: an admin's `ip route add … dev eth1` (also `boot`) is not;
//! - every other route the agent writes carries [`OCELOT_PROTOCOL`].
//!
//! [`plan`] deletes or replaces only owned routes: BIRD's (`proto bird`), the kernel's and the
//! admin's are never touched. Routes already in the kernel that equal a desired one are adopted as
//! they are, so a restart causes no churn.
//!
//! IPv4 only for now: the agent's pools and the seed are IPv4.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// The kernel's main routing table.
pub const RT_TABLE_MAIN: u32 = 254;

/// Route protocol numbers the agent meets (Linux `RTPROT_*`, iproute2's `rt_protos`).
pub const RTPROT_KERNEL: u8 = 2;
/// `ip route add` without `proto` writes this. Felix's default `deviceRouteProtocol`, so Ocelot uses
/// it for pod routes only, and owns such a route only when its device is a pod interface.
pub const RTPROT_BOOT: u8 = 3;
pub const RTPROT_STATIC: u8 = 4;
/// BIRD's learned routes.
pub const RTPROT_BIRD: u8 = 12;

/// Ocelot's route protocol: free in iproute2's `rt_protos` and distinct from `boot`, `static`
/// and every routing daemon's, so anything else's routes never look like ours. ASCII `O`.
pub const OCELOT_PROTOCOL: u8 = 79;

/// What a route does with matching packets.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteKind {
    /// `via <gateway> dev <dev>` (scope global); with `onlink` the kernel takes the gateway as
    /// directly reachable on `dev` without a connected route to it (`ip route ... onlink`, flag
    /// `RTNH_F_ONLINK`): the tunnel routes `via <remote VTEP> dev vxlan.calico onlink` and
    /// `via <node> dev tunl0 onlink`.
    Via {
        gateway: Ipv4Addr,
        dev: String,
        onlink: bool,
    },
    /// `dev <dev> scope link`: a pod's /32 to its host-side `cali*` veth.
    Link { dev: String },
    /// `blackhole`: the node's own blocks, so addresses not (yet) in use go nowhere.
    Blackhole,
    /// `throw`: leave this table, so the next rule's table decides (the WireGuard table's routes
    /// for destinations that must not enter the tunnel).
    Throw,
    /// Anything else the kernel holds (local, unreachable, multipath, extra attributes, ...),
    /// described for logs. Never desired; kept only so its slot and owner are known.
    Other(String),
}

/// One IPv4 route. The kernel identifies a route by [`RouteKey`]: at most one route per key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route {
    /// Destination; only its network address counts (the kernel refuses host bits).
    pub dst: Ipv4Net,
    pub kind: RouteKind,
    pub table: u32,
    /// Priority (`metric`); 0 when unset.
    pub metric: u32,
    pub protocol: u8,
}

/// The kernel's identity of an IPv4 route (`tos` is always 0 here): adding a route with the key
/// of an existing one replaces it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteKey {
    pub table: u32,
    pub dst: Ipv4Net,
    pub metric: u32,
}

/// Which routes in the kernel are the agent's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ownership {
    /// Protocol of pod routes: FelixConfiguration `deviceRouteProtocol` (default 3).
    pub device_protocol: u8,
    /// Host-side pod interface prefixes: FelixConfiguration `interfacePrefix`, a comma list
    /// (default `cali`).
    pub interface_prefixes: Vec<String>,
    /// Protocol of every other route the agent writes.
    pub protocol: u8,
}

impl Default for Ownership {
    fn default() -> Self {
        Ownership {
            device_protocol: RTPROT_BOOT,
            interface_prefixes: vec!["cali".into()],
            protocol: OCELOT_PROTOCOL,
        }
    }
}

impl Ownership {
    /// From a node's desired dataplane settings (its NodeNetworkState `spec.dataplane`).
    pub fn for_dataplane(d: &crate::api::nodestate::DataplaneSettings) -> Ownership {
        Ownership::new(
            d.device_route_protocol.unwrap_or(RTPROT_BOOT),
            d.interface_prefix.as_deref().unwrap_or("cali"),
        )
    }

    /// From FelixConfiguration values: `deviceRouteProtocol` and the `interfacePrefix` list.
    pub fn new(device_protocol: u8, interface_prefix: &str) -> Ownership {
        let prefixes: Vec<String> = interface_prefix
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect();
        Ownership {
            device_protocol,
            interface_prefixes: if prefixes.is_empty() {
                vec!["cali".into()]
            } else {
                prefixes
            },
            protocol: OCELOT_PROTOCOL,
        }
    }

    fn is_pod_route(&self, r: &Route) -> bool {
        matches!(&r.kind, RouteKind::Link { dev }
            if self.interface_prefixes.iter().any(|p| dev.starts_with(p.as_str())))
    }

    /// The protocol the agent writes `r` with.
    pub fn protocol_for(&self, r: &Route) -> u8 {
        if self.is_pod_route(r) {
            self.device_protocol
        } else {
            self.protocol
        }
    }

    /// Whether `r`, as read from the kernel, was written by the agent.
    pub fn owns(&self, r: &Route) -> bool {
        r.protocol == self.protocol || (r.protocol == self.device_protocol && self.is_pod_route(r))
    }
}

impl Route {
    /// A pod's route: `<ip>/32 dev <veth> scope link`, main table, protocol `boot` (Felix's
    /// default `deviceRouteProtocol`; [`plan`] stamps the configured one).
    pub fn pod(ip: Ipv4Addr, veth: &str) -> Route {
        let mut r = Route::owned(Ipv4Net::from(ip), RouteKind::Link { dev: veth.into() });
        r.protocol = RTPROT_BOOT;
        r
    }

    /// `blackhole <net>`, main table, Ocelot's protocol.
    pub fn blackhole(net: Ipv4Net) -> Route {
        Route::owned(net, RouteKind::Blackhole)
    }

    /// `<net> via <gateway> dev <dev>`, main table, Ocelot's protocol.
    pub fn via(net: Ipv4Net, gateway: Ipv4Addr, dev: &str) -> Route {
        Route::owned(
            net,
            RouteKind::Via {
                gateway,
                dev: dev.into(),
                onlink: false,
            },
        )
    }

    /// `<net> via <gateway> dev <dev> onlink`, main table, Ocelot's protocol: a tunnel route.
    pub fn via_onlink(net: Ipv4Net, gateway: Ipv4Addr, dev: &str) -> Route {
        Route::owned(
            net,
            RouteKind::Via {
                gateway,
                dev: dev.into(),
                onlink: true,
            },
        )
    }

    fn owned(dst: Ipv4Net, kind: RouteKind) -> Route {
        Route {
            dst: dst.trunc(),
            kind,
            table: RT_TABLE_MAIN,
            metric: 0,
            protocol: OCELOT_PROTOCOL,
        }
    }

    /// The output device, for routes that have one (`via` and `dev ... scope link`).
    pub fn dev(&self) -> Option<&str> {
        match &self.kind {
            RouteKind::Via { dev, .. } | RouteKind::Link { dev } => Some(dev),
            _ => None,
        }
    }

    pub fn key(&self) -> RouteKey {
        RouteKey {
            table: self.table,
            dst: self.dst.trunc(),
            metric: self.metric,
        }
    }
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            RouteKind::Via {
                gateway,
                dev,
                onlink,
            } => {
                write!(f, "{} via {gateway} dev {dev}", self.dst)?;
                if *onlink {
                    f.write_str(" onlink")?;
                }
            }
            RouteKind::Link { dev } => write!(f, "{} dev {dev} scope link", self.dst)?,
            RouteKind::Blackhole => write!(f, "blackhole {}", self.dst)?,
            RouteKind::Throw => write!(f, "throw {}", self.dst)?,
            RouteKind::Other(what) => write!(f, "{} ({what})", self.dst)?,
        }
        write!(
            f,
            " table {} metric {} proto {}",
            self.table, self.metric, self.protocol
        )
    }
}

/// A desired route that cannot be installed without touching a route that is not ours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub wanted: Route,
    /// The route holding the slot: a foreign kernel route, or an earlier desired route with the
    /// same key.
    pub occupant: Route,
}

/// Kernel writes, as values. Applying them in any order gives the same result: no route is both
/// added and deleted, and no two adds share a key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoutePlan {
    /// Routes to write with replace semantics (create, or overwrite our own route at the key).
    pub add: Vec<Route>,
    /// Our own routes to delete; "not found" counts as done.
    pub delete: Vec<Route>,
    /// Desired routes left out; reported, never forced.
    pub conflicts: Vec<Conflict>,
}

impl RoutePlan {
    /// Nothing to write (conflicts may remain: they need someone else to act).
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.delete.is_empty()
    }
}

/// What to write so the kernel holds `desired` plus every route `own` does not own.
///
/// Desired routes are stamped with the protocol `own` gives them (they are ours by definition; a
/// foreign protocol would leak them) and normalised to their network address. `current` is what
/// the kernel holds in the tables concerned. Routes already present are adopted; only owned
/// routes are ever deleted or replaced; a desired route whose key is held by a foreign route is
/// reported as a [`Conflict`]. The plan of an applied state is empty.
pub fn plan(desired: &[Route], current: &[Route], own: &Ownership) -> RoutePlan {
    let mut out = RoutePlan::default();
    let mut at_key: HashMap<RouteKey, Vec<&Route>> = HashMap::with_capacity(current.len());
    for route in current {
        at_key.entry(route.key()).or_default().push(route);
    }
    let mut wanted: HashMap<RouteKey, Route> = HashMap::with_capacity(desired.len());
    for route in desired {
        let mut route = route.clone();
        route.protocol = own.protocol_for(&route);
        route.dst = route.dst.trunc();
        let key = route.key();
        if let Some(first) = wanted.get(&key) {
            out.conflicts.push(Conflict {
                wanted: route,
                occupant: first.clone(),
            });
            continue;
        }
        let present = at_key.get(&key).map(Vec::as_slice).unwrap_or_default();
        if let Some(foreign) = present.iter().find(|r| !own.owns(r)) {
            out.conflicts.push(Conflict {
                wanted: route.clone(),
                occupant: (*foreign).clone(),
            });
        } else if present.contains(&&route) {
            // Adopted. Anything else of ours at the key (only `ip route append` makes such
            // twins) goes.
            out.delete.extend(
                present
                    .iter()
                    .filter(|r| ***r != route)
                    .map(|r| (*r).clone()),
            );
        } else {
            // The replace overwrites the first route at the key; further twins go.
            out.delete
                .extend(present.iter().skip(1).map(|r| (*r).clone()));
            out.add.push(route.clone());
        }
        wanted.insert(key, route);
    }
    let mut deleted: HashSet<&Route> = out.delete.iter().collect();
    let mut stale = Vec::new();
    for route in current {
        if own.owns(route) && !wanted.contains_key(&route.key()) && deleted.insert(route) {
            stale.push(route.clone());
        }
    }
    out.delete.extend(stale);
    out
}

#[cfg(test)]
#[path = "routes_tests.rs"]
mod tests;
