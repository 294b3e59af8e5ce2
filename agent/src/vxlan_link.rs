//! Netlink work for VXLAN in the node's namespace: `vxlan.calico` read back as the core's
//! [`VxlanDevice`], created, changed and deleted; its permanent ARP neighbours and FDB entries
//! (`ip neigh … nud permanent`, `bridge fdb … self permanent`); and the uplink (the interface
//! holding the node's address), whose MTU is the host MTU.
use std::net::{IpAddr, Ipv4Addr};

use futures::stream::TryStreamExt;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use ocelot::overlay::{FdbEntry, MacAddr, Neighbour, VXLAN_DEVICE, VxlanDevice};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVxlan};

use crate::routes::RouteNetlink;

/// The interface carrying the node's address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uplink {
    pub name: String,
    pub mtu: u32,
}

/// `vxlan.calico` and what hangs off it, as the kernel holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// The device read back as a value. A device that differs in what the value cannot show
    /// (learning on, down, other addresses) reads back with `mtu` -1 or `local` 0.0.0.0, so
    /// the transition updates or recreates it.
    pub device: Option<VxlanDevice>,
    pub neighbours: Vec<Neighbour>,
    pub fdb: Vec<FdbEntry>,
}

fn nl(what: &str) -> impl Fn(rtnetlink::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

async fn run<T: Send + 'static, F>(
    sock: &RouteNetlink,
    f: impl FnOnce(Handle) -> F + Send + 'static,
) -> Result<T, String>
where
    F: std::future::Future<Output = Result<T, String>> + Send + 'static,
{
    sock.run(f).await.map_err(|e| e.to_string())?
}

fn name_of(m: &LinkMessage) -> Option<String> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })
}

fn mtu_of(m: &LinkMessage) -> Option<u32> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(v) => Some(*v),
        _ => None,
    })
}

fn v4_of(m: &AddressMessage) -> Option<Ipv4Addr> {
    m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(IpAddr::V4(v)) => Some(*v),
        _ => None,
    })
}

fn mac_of(bytes: &[u8]) -> Option<MacAddr> {
    <[u8; 6]>::try_from(bytes).ok().map(MacAddr)
}

async fn links(h: &Handle) -> Result<Vec<LinkMessage>, String> {
    h.link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl("reading the interfaces"))
}

async fn addresses(h: &Handle, index: Option<u32>) -> Result<Vec<AddressMessage>, String> {
    let mut req = h.address().get();
    if let Some(i) = index {
        req = req.set_link_index_filter(i);
    }
    req.execute()
        .try_collect()
        .await
        .map_err(nl("reading the addresses"))
}

/// The interface holding `node_ip`.
pub async fn uplink(sock: &RouteNetlink, node_ip: Ipv4Addr) -> Result<Uplink, String> {
    run(sock, move |h| async move {
        let addrs = addresses(&h, None).await?;
        let index = addrs
            .iter()
            .find(|a| v4_of(a) == Some(node_ip))
            .map(|a| a.header.index)
            .ok_or_else(|| format!("no interface holds the node address {node_ip}"))?;
        let links = links(&h).await?;
        let m = links
            .iter()
            .find(|l| l.header.index == index)
            .ok_or_else(|| format!("interface {index} vanished"))?;
        Ok(Uplink {
            name: name_of(m).unwrap_or_default(),
            mtu: mtu_of(m).unwrap_or(1500),
        })
    })
    .await
}

/// Reads `vxlan.calico`, its permanent neighbours and its FDB entries.
pub async fn observe(sock: &RouteNetlink) -> Result<Observed, String> {
    run(sock, move |h| async move {
        let links = links(&h).await?;
        let Some(m) = links
            .iter()
            .find(|l| name_of(l).as_deref() == Some(VXLAN_DEVICE))
        else {
            return Ok(Observed::default());
        };
        let index = m.header.index;
        let info: Vec<InfoVxlan> = m
            .attributes
            .iter()
            .filter_map(|a| match a {
                LinkAttribute::LinkInfo(i) => Some(i),
                _ => None,
            })
            .flatten()
            .filter_map(|i| match i {
                LinkInfo::Data(InfoData::Vxlan(v)) => Some(v.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        let (mut vni, mut port, mut local, mut parent, mut learning) =
            (0, 0, Ipv4Addr::UNSPECIFIED, String::new(), true);
        for i in &info {
            match i {
                InfoVxlan::Id(v) => vni = *v,
                InfoVxlan::Port(p) => port = *p,
                InfoVxlan::Local(a) => local = *a,
                InfoVxlan::Learning(l) => learning = *l,
                InfoVxlan::Link(l) => {
                    parent = links
                        .iter()
                        .find(|x| x.header.index == *l)
                        .and_then(name_of)
                        .unwrap_or_default()
                }
                _ => {}
            }
        }
        let mac = m
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Address(b) => mac_of(b),
                _ => None,
            })
            .unwrap_or(MacAddr([0; 6]));
        let addrs = addresses(&h, Some(index)).await?;
        let v4: Vec<(Ipv4Addr, u8)> = addrs
            .iter()
            .filter_map(|a| Some((v4_of(a)?, a.header.prefix_len)))
            .collect();
        let address = match v4.as_slice() {
            [(a, 32)] => *a,
            _ => Ipv4Addr::UNSPECIFIED,
        };
        let exact = address != Ipv4Addr::UNSPECIFIED && m.header.flags.contains(LinkFlags::Up);
        let device = VxlanDevice {
            vni,
            port,
            mtu: if exact {
                mtu_of(m).map_or(-1, |v| v as i32)
            } else {
                -1
            },
            local: if learning {
                Ipv4Addr::UNSPECIFIED
            } else {
                local
            },
            parent,
            address,
            mac,
        };
        let mut neighbours = Vec::new();
        let mut fdb = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Bridge] {
            let dump: Vec<NeighbourMessage> = h
                .neighbours()
                .get()
                .set_address_family(family)
                .execute()
                .try_collect()
                .await
                .map_err(nl("reading the neighbours"))?;
            for n in dump.iter().filter(|n| n.header.ifindex == index) {
                let lla = n.attributes.iter().find_map(|a| match a {
                    NeighbourAttribute::LinkLayerAddress(b) => mac_of(b),
                    _ => None,
                });
                let dst = n.attributes.iter().find_map(|a| match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(v)) => Some(*v),
                    _ => None,
                });
                let (Some(mac), Some(ip)) = (lla, dst) else {
                    continue;
                };
                if n.header.state != NeighbourState::Permanent {
                    continue;
                }
                let dev = VXLAN_DEVICE.to_string();
                match family {
                    AddressFamily::Inet => neighbours.push(Neighbour { dev, ip, mac }),
                    _ => fdb.push(FdbEntry { dev, mac, dst: ip }),
                }
            }
        }
        neighbours.sort();
        fdb.sort();
        Ok(Observed {
            device: Some(device),
            neighbours,
            fdb,
        })
    })
    .await
}

async fn index_of(h: &Handle, name: &str) -> Result<Option<u32>, String> {
    Ok(crate::routes::link_by_name(h, name)
        .await
        .map_err(|e| format!("reading interface {name}: {e}"))?
        .map(|m| m.header.index))
}

/// Creates `vxlan.calico` as Felix does (no learning; MAC, MTU, address), up.
pub async fn add_device(sock: &RouteNetlink, dev: &VxlanDevice) -> Result<(), String> {
    let d = dev.clone();
    run(sock, move |h| async move {
        let parent = index_of(&h, &d.parent)
            .await?
            .ok_or_else(|| format!("no uplink {}", d.parent))?;
        let msg = LinkMessageBuilder::<LinkVxlan>::new(VXLAN_DEVICE)
            .id(d.vni)
            .dev(parent)
            .port(d.port)
            .local(d.local)
            .learning(false)
            .address(d.mac.0.to_vec())
            .mtu(d.mtu as u32)
            .build();
        h.link()
            .add(msg)
            .execute()
            .await
            .map_err(nl("creating vxlan.calico"))?;
        Ok(())
    })
    .await?;
    update_device(sock, dev).await
}

/// MTU, MAC, up, and `address`/32 as the only address.
pub async fn update_device(sock: &RouteNetlink, d: &VxlanDevice) -> Result<(), String> {
    let mac = d.mac.0.to_vec();
    run(sock, move |h| async move {
        let index = index_of(&h, VXLAN_DEVICE)
            .await?
            .ok_or("vxlan.calico vanished")?;
        h.link()
            .set(LinkUnspec::new_with_index(index).address(mac).build())
            .execute()
            .await
            .map_err(nl("setting vxlan.calico's MAC"))?;
        Ok(())
    })
    .await?;
    crate::wg_link::configure(sock, VXLAN_DEVICE, d.mtu as u32, Some(d.address)).await?;
    Ok(())
}

/// Deletes `vxlan.calico` (its neighbours, FDB entries and routes go with it); absent is done.
pub async fn remove_device(sock: &RouteNetlink) -> Result<(), String> {
    run(sock, move |h| async move {
        if let Some(i) = index_of(&h, VXLAN_DEVICE).await? {
            h.link()
                .del(i)
                .execute()
                .await
                .map_err(nl("deleting vxlan.calico"))?;
        }
        Ok(())
    })
    .await
}

/// `ip neigh replace|del <ip> lladdr <mac> dev vxlan.calico nud permanent`.
pub async fn neighbour(sock: &RouteNetlink, n: &Neighbour, add: bool) -> Result<(), String> {
    let (ip, mac) = (n.ip, n.mac.0);
    neigh_entry(
        sock,
        n.dev.clone(),
        add,
        "a VXLAN ARP entry",
        move |h, index| {
            h.neighbours()
                .add(index, IpAddr::V4(ip))
                .link_layer_address(&mac)
                .state(NeighbourState::Permanent)
        },
    )
    .await
}

/// `bridge fdb replace|del <mac> dev vxlan.calico dst <node> self permanent`.
pub async fn fdb(sock: &RouteNetlink, f: &FdbEntry, add: bool) -> Result<(), String> {
    let (mac, dst) = (f.mac.0, f.dst);
    neigh_entry(
        sock,
        f.dev.clone(),
        add,
        "a VXLAN FDB entry",
        move |h, index| {
            h.neighbours()
                .add_bridge(index, &mac)
                .destination(IpAddr::V4(dst))
                .flags(NeighbourFlags::Own)
                .state(NeighbourState::Permanent)
        },
    )
    .await
}

/// Replaces (`add`) or deletes the neighbour-table entry `entry` builds on `dev`. A missing
/// device fails a write and leaves nothing to delete.
async fn neigh_entry(
    sock: &RouteNetlink,
    dev: String,
    add: bool,
    what: &'static str,
    entry: impl FnOnce(&Handle, u32) -> rtnetlink::NeighbourAddRequest + Send + 'static,
) -> Result<(), String> {
    run(sock, move |h| async move {
        let Some(index) = index_of(&h, &dev).await? else {
            return if add {
                Err(format!("no {dev}"))
            } else {
                Ok(())
            };
        };
        let mut req = entry(&h, index).replace();
        if add {
            return req.execute().await.map_err(nl(&format!("writing {what}")));
        }
        let msg = req.message_mut().clone();
        gone_ok(h.neighbours().del(msg).execute().await).map_err(nl(&format!("deleting {what}")))
    })
    .await
}

/// A delete of what is already gone is done.
fn gone_ok(r: Result<(), rtnetlink::Error>) -> Result<(), rtnetlink::Error> {
    match r {
        Err(rtnetlink::Error::NetlinkError(e))
            if matches!(-e.raw_code(), libc::ENOENT | libc::ESRCH | libc::ENODEV) =>
        {
            Ok(())
        }
        r => r,
    }
}
