//! A pod's interfaces, as Calico's CNI plugin makes them: a veth pair created in one request with
//! the pod end already in the sandbox (named `eth0`), the host end `cali…` with MAC
//! ee:ee:ee:ee:ee:ee and proxy ARP, the pod's /32 with `169.254.1.1 dev eth0 scope link` and
//! `default via 169.254.1.1`, and the host's `/32 dev cali… scope link` route. Every failure
//! deletes the host end, which takes the pod end with it: nothing is left behind.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute};
// `proto boot` (what `ip route add` uses): `ip route` prints the pod routes as the seed shows them.
use netlink_packet_route::route::{RouteProtocol, RouteScope};
use ocelot::naming::POD_GATEWAY;
use ocelot::routes::{Ownership, Route};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::routes::RouteNetlink;

const HOST_MAC: [u8; 6] = [0xee; 6];

/// A failed pod interface step; `step` names what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {detail}")]
pub struct DataplaneError {
    pub step: &'static str,
    pub detail: String,
}

fn fail(step: &'static str) -> impl FnOnce(rtnetlink::Error) -> DataplaneError {
    move |e| DataplaneError {
        step,
        detail: e.to_string(),
    }
}

/// What one pod attachment needs.
#[derive(Clone, Debug)]
pub struct PodLink {
    pub host_veth: String,
    pub ifname: String,
    pub netns: PathBuf,
    pub address: Ipv4Addr,
    pub mtu: u32,
    /// The node's writable `/proc/sys` ([`crate::agent::Settings::proc_sys`]).
    pub proc_sys: PathBuf,
}

/// Makes the pod's interfaces and the host route; returns the pod interface's MAC.
pub async fn add(
    node: &RouteNetlink,
    own: &Ownership,
    link: &PodLink,
) -> Result<String, DataplaneError> {
    let sandbox = File::open(&link.netns).map_err(|e| DataplaneError {
        step: "opening the sandbox's network namespace",
        detail: format!("{}: {e}", link.netns.display()),
    })?;
    let result = add_inner(node, own, link, sandbox).await;
    if result.is_err() {
        // Best effort: the error being reported is the first one.
        let _ = delete(node, &link.host_veth).await;
    }
    result
}

async fn add_inner(
    node: &RouteNetlink,
    own: &Ownership,
    link: &PodLink,
    sandbox: File,
) -> Result<String, DataplaneError> {
    // The sandbox's socket thread starts while the pair is made.
    let netns = link.netns.clone();
    let pod = tokio::task::spawn_blocking(move || RouteNetlink::connect_in_netns(&netns));
    let l = link.clone();
    node.run(move |h| async move { make_pair(h, &l, sandbox).await })
        .await
        .map_err(thread_error)??;
    let pod = pod
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
        .map_err(|detail| DataplaneError {
            step: "entering the sandbox",
            detail,
        })?;
    // The host end's settings and route and the pod end's address and routes are written at
    // once, each on its namespace's socket.
    let route = Route {
        protocol: own.device_protocol,
        ..Route::pod(link.address, &link.host_veth)
    };
    let (l, p) = (link.clone(), link.clone());
    let (host, mac) = futures::join!(
        node.run(move |h| async move { host_side(h, &l, &route).await }),
        pod.run(move |h| async move { pod_side(h, &p).await }),
    );
    host.map_err(thread_error)??;
    mac.map_err(thread_error)?
}

fn thread_error(e: crate::routes::Error) -> DataplaneError {
    DataplaneError {
        step: "netlink thread",
        detail: e.to_string(),
    }
}

/// The veth pair in one request, the host end up, the pod end already in the sandbox. A host end
/// left by an earlier sandbox of the same pod (the name is per pod) is deleted and the pair
/// made again.
async fn make_pair(h: Handle, link: &PodLink, sandbox: File) -> Result<(), DataplaneError> {
    let pair = || {
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(link.ifname.clone())
            .mtu(link.mtu)
            // Not `up` here: the kernel opens the peer before the pair is linked (ENOTCONN).
            .setns_by_fd(sandbox.as_raw_fd())
            .build();
        LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(link.host_veth.clone())
            .mtu(link.mtu)
            .address(HOST_MAC.to_vec())
            .up()
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build()
    };
    match h.link().add(pair()).execute().await {
        Ok(()) => return Ok(()),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => {}
        Err(e) => return Err(fail("creating the veth pair")(e)),
    }
    if let Some(index) = link_index(&h, &link.host_veth).await? {
        h.link()
            .del(index)
            .execute()
            .await
            .map_err(fail("deleting the pod's stale host interface"))?;
    }
    h.link()
        .add(pair())
        .execute()
        .await
        .map_err(fail("creating the veth pair"))
}

/// Runs on the node namespace's netlink thread, so the sysctl files are the node's.
async fn host_side(h: Handle, link: &PodLink, route: &Route) -> Result<(), DataplaneError> {
    // Felix's settings for a workload interface: answer ARP for the gateway, no delay, forward.
    let dev = &link.host_veth;
    let net = link.proc_sys.join("net/ipv4");
    for (path, value) in [
        (net.join(format!("conf/{dev}/proxy_arp")), "1"),
        (net.join(format!("neigh/{dev}/proxy_delay")), "0"),
        (net.join(format!("conf/{dev}/forwarding")), "1"),
    ] {
        std::fs::write(&path, value).map_err(|e| DataplaneError {
            step: "setting the host interface's sysctls",
            detail: format!("{}: {e}", path.display()),
        })?;
    }
    let index = link_index(&h, dev).await?.ok_or_else(|| DataplaneError {
        step: "reading the host interface",
        detail: format!("{dev} vanished after creation"),
    })?;
    crate::routes::add_on_device(&h, route, index)
        .await
        .map_err(|e| DataplaneError {
            step: "adding the host route to the pod",
            detail: e.to_string(),
        })
}

/// Runs on a thread inside the sandbox.
async fn pod_side(h: Handle, link: &PodLink) -> Result<String, DataplaneError> {
    let (index, mac) = link_index_mac(&h, &link.ifname)
        .await?
        .ok_or_else(|| DataplaneError {
            step: "reading the pod interface",
            detail: format!("no {} in the sandbox", link.ifname),
        })?;
    let mut add = h.address().add(index, link.address.into(), 32);
    // As Calico's pods show it: `inet <ip>/32 brd <ip>` (the /32's broadcast is the address).
    add.message_mut()
        .attributes
        .push(AddressAttribute::Broadcast(link.address));
    let up = h.link().set(LinkUnspec::new_with_index(index).up().build());
    let gateway = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(POD_GATEWAY, 32)
        .output_interface(index)
        .scope(RouteScope::Link)
        .protocol(RouteProtocol::Boot)
        .build();
    let default = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(POD_GATEWAY)
        .output_interface(index)
        .protocol(RouteProtocol::Boot)
        .build();
    // Pipelined, in this order: the kernel handles a socket's requests one by one as they are
    // sent, and `join!` sends them in argument order, so the link is up before the gateway route
    // and that route is in before the default route that needs it.
    let (address, up, gw, default) = futures::join!(
        add.execute(),
        up.execute(),
        h.route().add(gateway).execute(),
        h.route().add(default).execute(),
    );
    address.map_err(fail("adding the pod's address"))?;
    up.map_err(fail("bringing the pod interface up"))?;
    gw.map_err(fail("adding the gateway route in the pod"))?;
    default.map_err(fail("adding the default route in the pod"))?;
    Ok(mac)
}

async fn link_index(h: &Handle, name: &str) -> Result<Option<u32>, DataplaneError> {
    Ok(link_index_mac(h, name).await?.map(|(i, _)| i))
}

async fn link_index_mac(h: &Handle, name: &str) -> Result<Option<(u32, String)>, DataplaneError> {
    let Some(msg) = crate::routes::link_by_name(h, name)
        .await
        .map_err(fail("reading interfaces"))?
    else {
        return Ok(None);
    };
    let mac = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(b) => Some(
                b.iter()
                    .map(|x| format!("{x:02x}"))
                    .collect::<Vec<_>>()
                    .join(":"),
            ),
            _ => None,
        })
        .unwrap_or_default();
    Ok(Some((msg.header.index, mac)))
}

/// Deletes a pod's host interface (and with it the pod end and the host route); absent is done.
pub async fn delete(node: &RouteNetlink, host_veth: &str) -> Result<(), DataplaneError> {
    let name = host_veth.to_string();
    node.run(move |h| async move {
        if let Some(index) = link_index(&h, &name).await? {
            match h.link().del(index).execute().await {
                Ok(()) => {}
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => {}
                Err(e) => return Err(fail("deleting the pod's host interface")(e)),
            }
        }
        Ok(())
    })
    .await
    .map_err(thread_error)?
}

/// Whether a pod's host interface exists.
pub async fn exists(node: &RouteNetlink, host_veth: &str) -> Result<bool, DataplaneError> {
    let name = host_veth.to_string();
    node.run(move |h| async move { Ok(link_index(&h, &name).await?.is_some()) })
        .await
        .map_err(thread_error)?
}

/// Whether `path` names a network namespace file the agent can open (checked before an address is
/// assigned, so a bad CNI_NETNS costs no IPAM write).
pub fn sandbox_exists(path: &Path) -> Result<(), String> {
    File::open(path)
        .map(drop)
        .map_err(|e| format!("{}: {e}", path.display()))
}
