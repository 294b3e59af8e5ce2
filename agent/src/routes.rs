//! The agent's route layer: reads a table's IPv4 routes into [`Route`] values and applies a
//! [`RoutePlan`] over one netlink socket, pipelined (feasibility.md §4: one ACK round trip per
//! route when awaited one by one; pipelined it matches `ip -batch`).
//!
//! Namespaces: a netlink socket belongs to the network namespace its thread was in when it was
//! created. The agent runs in the host's and uses [`RouteNetlink::connect`]; tests and the bench
//! use [`RouteNetlink::connect_in_netns`], whose socket thread enters the namespace first, so the
//! caller's threads never change namespace.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;

use futures::stream::{FuturesUnordered, StreamExt, TryStreamExt};
use ipnet::Ipv4Net;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::link::LinkAttribute;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use ocelot::routes::{Route, RouteKind, RoutePlan};
use rtnetlink::{Handle, RouteMessageBuilder};

/// Requests in flight on the socket. 64-512 all come close to `ip -batch` (feasibility.md §4);
/// the bound keeps the socket's receive buffer far from overflowing with ACKs.
pub const APPLY_CONCURRENCY: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("netlink: {0}")]
    Netlink(#[from] rtnetlink::Error),
    #[error("reading the interfaces: {0}")]
    Links(String),
    #[error("netlink thread: {0}")]
    Thread(String),
    #[error("no interface named {0:?}")]
    NoSuchDevice(String),
    #[error("{0} cannot be written: it is not a route Ocelot makes")]
    NotWritable(String),
}

/// Which write failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Add,
    Delete,
}

/// A route the kernel refused, with why.
#[derive(Debug)]
pub struct RouteFailure {
    pub op: Op,
    pub route: Route,
    pub error: Error,
}

/// What [`RouteNetlink::apply`] did. Every route of the plan is counted exactly once.
#[derive(Debug, Default)]
pub struct ApplyReport {
    pub added: usize,
    pub deleted: usize,
    /// Deletes of routes that were already gone (done, as far as the plan is concerned).
    pub already_gone: usize,
    pub failures: Vec<RouteFailure>,
}

impl ApplyReport {
    fn all_failed(plan: &RoutePlan, error: impl Fn() -> Error) -> ApplyReport {
        let deletes = plan.delete.iter().map(|r| (Op::Delete, r));
        let writes = deletes.chain(plan.add.iter().map(|r| (Op::Add, r)));
        ApplyReport {
            failures: writes
                .map(|(op, route)| RouteFailure {
                    op,
                    route: route.clone(),
                    error: error(),
                })
                .collect(),
            ..ApplyReport::default()
        }
    }

    pub fn is_ok(&self) -> bool {
        self.failures.is_empty()
    }
}

/// A netlink route socket in one network namespace, served by its own thread.
///
/// The socket and every request on it live on one thread with a single-threaded runtime: with
/// the connection task and the pipelined requests on different worker threads, each ACK costs a
/// cross-thread wakeup and applying 10,000 routes took 1.4-1.7x `ip -batch`; on one thread it
/// takes 0.7x (BENCHMARKS.md, "Routes (agent)"). Callers on any runtime pay one wakeup per call.
/// The thread ends when the last clone is dropped.
#[derive(Clone)]
pub struct RouteNetlink {
    socket: Socket,
    runtime: tokio::runtime::Handle,
    _stop: Arc<tokio::sync::oneshot::Sender<()>>,
}

impl RouteNetlink {
    /// A socket in the agent's own network namespace.
    pub fn connect() -> io::Result<RouteNetlink> {
        RouteNetlink::start(None)
    }

    /// A socket in the network namespace at `netns` (e.g. `/run/netns/<name>`); needs
    /// CAP_SYS_ADMIN. Only the socket's thread enters the namespace; the caller's threads stay.
    pub fn connect_in_netns(netns: &Path) -> io::Result<RouteNetlink> {
        RouteNetlink::start(Some(File::open(netns).map_err(|e| {
            io::Error::new(e.kind(), format!("{}: {e}", netns.display()))
        })?))
    }

    fn start(netns: Option<File>) -> io::Result<RouteNetlink> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("ocelot-netlink".into())
            .spawn(move || {
                let started = (|| {
                    if let Some(ns) = &netns {
                        // SAFETY: plain syscall on a valid, open fd; changes only this thread,
                        // and the socket created below stays in that namespace for its life.
                        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                            return Err(io::Error::last_os_error());
                        }
                    }
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    let (conn, handle, _) = {
                        let _entered = runtime.enter();
                        rtnetlink::new_connection()?
                    };
                    runtime.spawn(conn);
                    Ok((runtime, handle))
                })();
                match started {
                    Ok((runtime, handle)) => {
                        let _ = ready_tx.send(Ok((runtime.handle().clone(), handle)));
                        // Serves the connection and the spawned calls until the last clone goes.
                        runtime.block_on(async {
                            let _ = stop_rx.await;
                        });
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })?;
        let (runtime, handle) = ready_rx
            .recv()
            .map_err(|_| io::Error::other("netlink thread died while starting"))??;
        Ok(RouteNetlink {
            socket: Socket {
                handle,
                dumps: Default::default(),
            },
            runtime,
            _stop: Arc::new(stop_tx),
        })
    }

    /// Runs `f` with the socket's handle on the socket's thread, i.e. inside its network
    /// namespace: link and address requests, and `/proc/sys/net` writes, act on that namespace.
    pub async fn run<F, Fut, T>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce(Handle) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let handle = self.socket.handle.clone();
        self.runtime
            .spawn(async move { f(handle).await })
            .await
            .map_err(|e| Error::Thread(e.to_string()))
    }

    /// The IPv4 routes of `table` (any protocol), as values. Routes the model has no kind for
    /// come back as [`RouteKind::Other`], so their slot and owner are still known.
    pub async fn list(&self, table: u32) -> Result<Vec<Route>, Error> {
        let socket = self.socket.clone();
        self.runtime
            .spawn(async move { socket.list(table).await })
            .await
            .map_err(|e| Error::Thread(e.to_string()))?
    }

    /// Writes `plan`: adds with replace semantics, deletes where "not found" is success, all
    /// pipelined on this socket with at most [`APPLY_CONCURRENCY`] requests in flight. Failures
    /// are collected with their route; the rest of the plan still goes through.
    pub async fn apply(&self, plan: &RoutePlan) -> ApplyReport {
        let socket = self.socket.clone();
        let owned = plan.clone();
        match self
            .runtime
            .spawn(async move { socket.apply(&owned).await })
            .await
        {
            Ok(report) => report,
            Err(e) => ApplyReport::all_failed(plan, || Error::Thread(e.to_string())),
        }
    }
}

#[derive(Clone)]
struct Socket {
    handle: Handle,
    /// One dump at a time: the kernel refuses a second dump on a socket with EBUSY (concurrent
    /// ADDs each read the links).
    dumps: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// The link named `name` in the handle's namespace; None when there is none (ENODEV).
pub async fn link_by_name(
    h: &Handle,
    name: &str,
) -> Result<Option<netlink_packet_route::link::LinkMessage>, rtnetlink::Error> {
    let mut dump = h.link().get().match_name(name.to_string()).execute();
    match dump.try_next().await {
        Ok(m) => Ok(m),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(e),
    }
}

/// Adds (replaces) `route` on the device at `index`, on a handle the caller already holds:
/// for a pod's host route, whose device was just made, so no link table has to be read.
pub async fn add_on_device(h: &Handle, route: &Route, index: u32) -> Result<(), Error> {
    let msg = to_message(route, Some(index))?;
    h.route().add(msg).replace().execute().await?;
    Ok(())
}

impl Socket {
    /// Interface index to name, for every link in the namespace.
    async fn links(&self) -> Result<HashMap<u32, String>, Error> {
        let mut links = HashMap::new();
        let _one = self.dumps.lock().await;
        let mut dump = self.handle.link().get().execute();
        while let Some(msg) = dump.try_next().await? {
            let name = msg.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            });
            if let Some(name) = name {
                links.insert(msg.header.index, name);
            }
        }
        Ok(links)
    }

    async fn list(&self, table: u32) -> Result<Vec<Route>, Error> {
        let links = self.links().await?;
        let query = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let _one = self.dumps.lock().await;
        let mut dump = self.handle.route().get(query).execute();
        let mut routes = Vec::new();
        while let Some(msg) = dump.try_next().await? {
            if let Some(route) = from_message(&msg, &links)
                && route.table == table
            {
                routes.push(route);
            }
        }
        Ok(routes)
    }

    async fn apply(&self, plan: &RoutePlan) -> ApplyReport {
        let mut report = ApplyReport::default();
        let names = match self.links().await {
            Ok(links) => links.into_iter().map(|(i, n)| (n, i)).collect(),
            Err(e) => {
                // Without the link table no device route can be written; report every write.
                let error = e.to_string();
                return ApplyReport::all_failed(plan, || Error::Links(error.clone()));
            }
        };
        let names: HashMap<String, u32> = names;
        // Collected first and pipelined by hand (what `buffer_unordered` does): a stream built
        // from closures is not provably `Send`, which the socket thread's task must be.
        let mut pending: std::vec::IntoIter<(Op, &Route)> = plan
            .delete
            .iter()
            .map(|r| (Op::Delete, r))
            .chain(plan.add.iter().map(|r| (Op::Add, r)))
            .collect::<Vec<_>>()
            .into_iter();
        let mut in_flight = FuturesUnordered::new();
        loop {
            while in_flight.len() < APPLY_CONCURRENCY {
                let Some((op, route)) = pending.next() else {
                    break;
                };
                in_flight.push(self.write_tagged(op, route, &names));
            }
            let Some((op, route, result)) = in_flight.next().await else {
                break;
            };
            match (op, result) {
                (Op::Add, Ok(_)) => report.added += 1,
                (Op::Delete, Ok(Written::Done)) => report.deleted += 1,
                (Op::Delete, Ok(Written::AlreadyGone)) => report.already_gone += 1,
                (op, Err(error)) => report.failures.push(RouteFailure {
                    op,
                    route: route.clone(),
                    error,
                }),
            }
        }
        report
    }

    async fn write_tagged<'a>(
        &self,
        op: Op,
        route: &'a Route,
        names: &HashMap<String, u32>,
    ) -> (Op, &'a Route, Result<Written, Error>) {
        (op, route, self.write(op, route, names).await)
    }

    async fn write(
        &self,
        op: Op,
        route: &Route,
        names: &HashMap<String, u32>,
    ) -> Result<Written, Error> {
        let dev = match &route.kind {
            RouteKind::Via { dev, .. } | RouteKind::Link { dev } => match names.get(dev) {
                Some(&index) => Some(index),
                // The kernel drops a device's routes with the device.
                None if op == Op::Delete => return Ok(Written::AlreadyGone),
                None => return Err(Error::NoSuchDevice(dev.clone())),
            },
            RouteKind::Blackhole | RouteKind::Throw | RouteKind::Other(_) => None,
        };
        match op {
            Op::Add => {
                let msg = to_message(route, dev)?;
                self.handle.route().add(msg).replace().execute().await?;
                Ok(Written::Done)
            }
            Op::Delete => {
                let msg = match to_message(route, dev) {
                    Ok(msg) => msg,
                    Err(_) => delete_by_key(route),
                };
                match self.handle.route().del(msg).execute().await {
                    Ok(()) => Ok(Written::Done),
                    Err(rtnetlink::Error::NetlinkError(e))
                        if e.to_io().raw_os_error() == Some(libc::ESRCH) =>
                    {
                        Ok(Written::AlreadyGone)
                    }
                    Err(e) => Err(e.into()),
                }
            }
        }
    }
}

enum Written {
    Done,
    AlreadyGone,
}

fn builder(route: &Route) -> RouteMessageBuilder<Ipv4Addr> {
    let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(route.dst.network(), route.dst.prefix_len())
        .table_id(route.table)
        .protocol(RouteProtocol::from(route.protocol));
    if route.metric != 0 {
        b = b.priority(route.metric);
    }
    b
}

/// The exact route, as the kernel would report it: deletes built from it match only that route.
fn to_message(route: &Route, dev: Option<u32>) -> Result<RouteMessage, Error> {
    let b = builder(route);
    let msg = match (&route.kind, dev) {
        (
            RouteKind::Via {
                gateway, onlink, ..
            },
            Some(index),
        ) => {
            let mut msg = b.gateway(*gateway).output_interface(index).build();
            if *onlink {
                msg.header.flags |= RouteFlags::Onlink;
            }
            msg
        }
        (RouteKind::Link { .. }, Some(index)) => {
            b.output_interface(index).scope(RouteScope::Link).build()
        }
        (RouteKind::Blackhole, _) => b.kind(RouteType::BlackHole).build(),
        (RouteKind::Throw, _) => b.kind(RouteType::Throw).build(),
        _ => return Err(Error::NotWritable(route.to_string())),
    };
    Ok(msg)
}

/// Our route at the key whatever its type and scope: the kernel treats an unset type and scope
/// `nowhere` as wildcards, while the protocol still has to match, so only our route goes.
fn delete_by_key(route: &Route) -> RouteMessage {
    let mut msg = builder(route).build();
    msg.header.kind = RouteType::Unspec;
    msg.header.scope = RouteScope::NoWhere;
    msg
}

/// A kernel route as a value; `None` for other families.
fn from_message(msg: &RouteMessage, links: &HashMap<u32, String>) -> Option<Route> {
    let h = &msg.header;
    if h.address_family != AddressFamily::Inet {
        return None;
    }
    let mut table = u32::from(h.table);
    let mut dst = Ipv4Addr::UNSPECIFIED;
    let mut gateway = None;
    let mut oif = None;
    let mut metric = 0;
    // Anything we do not write makes the route `Other`, so an altered route of ours is rewritten.
    let mut extra = None;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(RouteAddress::Inet(a)) => dst = *a,
            RouteAttribute::Gateway(RouteAddress::Inet(a)) => gateway = Some(*a),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Priority(p) => metric = *p,
            RouteAttribute::CacheInfo(_) => {}
            other => extra = Some(format!("{other:?}")),
        }
    }
    let dst = Ipv4Net::new(dst, h.destination_prefix_length).ok()?;
    // Link-state flags come and go with the device; they do not make the route different.
    let flags = h.flags - (RouteFlags::Linkdown | RouteFlags::Dead);
    // `onlink` is written by us on tunnel routes (`via` only), so it is part of the value.
    let onlink = flags.contains(RouteFlags::Onlink) && gateway.is_some();
    let flags = if onlink {
        flags - RouteFlags::Onlink
    } else {
        flags
    };
    let dev = oif.map(|i| links.get(&i).cloned().unwrap_or_else(|| format!("if{i}")));
    let kind = match (h.kind, h.scope, gateway, dev) {
        _ if extra.is_some() || h.tos != 0 || !flags.is_empty() => RouteKind::Other(format!(
            "{:?} scope {:?} flags {:?} tos {} {}",
            h.kind,
            h.scope,
            h.flags,
            h.tos,
            extra.unwrap_or_default()
        )),
        (RouteType::Unicast, RouteScope::Universe, Some(gateway), Some(dev)) => RouteKind::Via {
            gateway,
            dev,
            onlink,
        },
        (RouteType::Unicast, RouteScope::Link, None, Some(dev)) => RouteKind::Link { dev },
        (RouteType::BlackHole, _, None, None) => RouteKind::Blackhole,
        (RouteType::Throw, _, None, None) => RouteKind::Throw,
        (kind, scope, _, _) => RouteKind::Other(format!("{kind:?} scope {scope:?}")),
    };
    Some(Route {
        dst,
        kind,
        table,
        metric,
        protocol: u8::from(h.protocol),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(route: &Route) -> Route {
        let links = HashMap::from([(7, "cali1".to_string()), (8, "ens4".to_string())]);
        let dev = match &route.kind {
            RouteKind::Link { .. } => Some(7),
            RouteKind::Via { .. } => Some(8),
            _ => None,
        };
        from_message(&to_message(route, dev).unwrap(), &links).unwrap()
    }

    #[test]
    fn messages_read_back_as_the_same_route() {
        let mut routes = vec![
            Route::pod(Ipv4Addr::new(10, 0, 0, 1), "cali1"),
            Route::blackhole("10.0.0.0/26".parse().unwrap()),
            Route::via(
                "10.1.0.0/26".parse().unwrap(),
                Ipv4Addr::new(192, 0, 2, 1),
                "ens4",
            ),
        ];
        let mut throw = Route::blackhole("10.2.0.0/26".parse().unwrap());
        throw.kind = RouteKind::Throw;
        throw.table = 1;
        routes.push(throw);
        let mut far = routes[0].clone();
        far.table = 1000;
        far.metric = 5;
        routes.push(far);
        for r in &routes {
            assert_eq!(&roundtrip(r), r);
        }
    }

    #[test]
    fn unknown_attributes_make_a_route_other() {
        let route = Route::pod(Ipv4Addr::new(10, 0, 0, 1), "cali1");
        let mut msg = to_message(&route, Some(7)).unwrap();
        msg.attributes
            .push(RouteAttribute::PrefSource(RouteAddress::Inet(
                Ipv4Addr::LOCALHOST,
            )));
        let read = from_message(&msg, &HashMap::new()).unwrap();
        assert!(matches!(read.kind, RouteKind::Other(_)), "{read:?}");
        assert_eq!(read.key(), route.key());
    }
}
