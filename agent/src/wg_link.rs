//! Netlink work for WireGuard in the node's namespace: the device's MTU, state and address, the
//! policy rule that selects the WireGuard table, and the host MTU the device's MTU derives from.
//! Every function reads first and writes only what differs, so a resync writes nothing.
use std::net::{IpAddr, Ipv4Addr};

use futures::stream::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleFlags, RuleMessage};
use rtnetlink::{Handle, IpVersion, LinkUnspec};

use crate::routes::RouteNetlink;

/// Calico's rule: `not from all fwmark <mark>/<mark> lookup <table>` at `priority`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WgRule {
    pub priority: u32,
    pub table: u32,
    pub mark: u32,
}

fn nl(what: &str) -> impl Fn(rtnetlink::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

async fn link(h: &Handle, name: &str) -> Result<Option<LinkMessage>, String> {
    crate::routes::link_by_name(h, name)
        .await
        .map_err(|e| format!("reading interface {name}: {e}"))
}

fn mtu_of(m: &LinkMessage) -> Option<u32> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(v) => Some(*v),
        _ => None,
    })
}

fn address_of(m: &AddressMessage) -> Option<Ipv4Addr> {
    m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(IpAddr::V4(v)) => Some(*v),
        _ => None,
    })
}

async fn run<T: Send + 'static, F>(
    nl_socket: &RouteNetlink,
    f: impl FnOnce(Handle) -> F + Send + 'static,
) -> Result<T, String>
where
    F: std::future::Future<Output = Result<T, String>> + Send + 'static,
{
    nl_socket.run(f).await.map_err(|e| e.to_string())?
}

/// Whether interface `name` exists.
pub async fn exists(sock: &RouteNetlink, name: &str) -> Result<bool, String> {
    let name = name.to_string();
    run(sock, move |h| async move {
        Ok(link(&h, &name).await?.is_some())
    })
    .await
}

/// Deletes interface `name`; absent is done.
pub async fn delete(sock: &RouteNetlink, name: &str) -> Result<bool, String> {
    let name = name.to_string();
    run(sock, move |h| async move {
        let Some(m) = link(&h, &name).await? else {
            return Ok(false);
        };
        h.link()
            .del(m.header.index)
            .execute()
            .await
            .map_err(nl("deleting the WireGuard interface"))?;
        Ok(true)
    })
    .await
}

/// Sets the device's MTU, brings it up and makes `address`/32 its only IPv4 address. Returns
/// the number of writes (0 when it already was so).
pub async fn configure(
    sock: &RouteNetlink,
    name: &str,
    mtu: u32,
    address: Option<Ipv4Addr>,
) -> Result<usize, String> {
    let name = name.to_string();
    run(sock, move |h| async move {
        let m = link(&h, &name)
            .await?
            .ok_or_else(|| format!("no interface {name} (the WireGuard device did not appear)"))?;
        let index = m.header.index;
        let mut writes = 0;
        if mtu_of(&m) != Some(mtu) || !m.header.flags.contains(LinkFlags::Up) {
            h.link()
                .set(LinkUnspec::new_with_index(index).mtu(mtu).up().build())
                .execute()
                .await
                .map_err(nl("setting the WireGuard interface's MTU and state"))?;
            writes += 1;
        }
        let have: Vec<AddressMessage> = h
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(nl("reading the WireGuard interface's addresses"))?;
        let mut present = false;
        for a in have {
            let Some(ip) = address_of(&a) else { continue };
            if Some(ip) == address && a.header.prefix_len == 32 {
                present = true;
                continue;
            }
            h.address()
                .del(a)
                .execute()
                .await
                .map_err(nl("removing a stale WireGuard address"))?;
            writes += 1;
        }
        if let (Some(ip), false) = (address, present) {
            let mut add = h.address().add(index, IpAddr::V4(ip), 32);
            // As the seed shows it: `inet <ip>/32 brd <ip> scope global wireguard.cali`.
            add.message_mut()
                .attributes
                .push(AddressAttribute::Broadcast(ip));
            add.execute()
                .await
                .map_err(nl("adding the WireGuard interface's address"))?;
            writes += 1;
        }
        Ok(writes)
    })
    .await
}

fn rule_parts(m: &RuleMessage) -> (Option<u32>, u32, Option<u32>, Option<u32>) {
    let mut priority = None;
    let mut table = u32::from(m.header.table);
    let (mut mark, mut mask) = (None, None);
    for a in &m.attributes {
        match a {
            RuleAttribute::Priority(p) => priority = Some(*p),
            RuleAttribute::Table(t) => table = *t,
            RuleAttribute::FwMark(v) => mark = Some(*v),
            RuleAttribute::FwMask(v) => mask = Some(*v),
            _ => {}
        }
    }
    (priority, table, mark, mask)
}

fn is_exactly(m: &RuleMessage, want: &WgRule) -> bool {
    let (p, t, mark, mask) = rule_parts(m);
    p == Some(want.priority)
        && t == want.table
        && mark == Some(want.mark)
        && mask == Some(want.mark)
        && m.header.flags.contains(RuleFlags::Invert)
        && m.header.action == RuleAction::ToTable
}

/// Ours: the rule's priority and table (another rule at the same priority is someone else's).
fn is_ours(m: &RuleMessage, want: &WgRule) -> bool {
    let (p, t, _, _) = rule_parts(m);
    p == Some(want.priority) && t == want.table
}

/// Makes the kernel hold exactly `want` (when given) among the rules at its priority and table,
/// removing ours that differ. Returns the number of writes.
pub async fn set_rule(sock: &RouteNetlink, rule: WgRule, install: bool) -> Result<usize, String> {
    run(sock, move |h| async move {
        let rules: Vec<RuleMessage> = h
            .rule()
            .get(IpVersion::V4)
            .execute()
            .try_collect()
            .await
            .map_err(nl("reading the routing rules"))?;
        let mut writes = 0;
        let mut present = false;
        for r in rules.into_iter().filter(|r| is_ours(r, &rule)) {
            if install && !present && is_exactly(&r, &rule) {
                present = true;
                continue;
            }
            h.rule()
                .del(r)
                .execute()
                .await
                .map_err(nl("removing the WireGuard routing rule"))?;
            writes += 1;
        }
        if install && !present {
            let mut add = h
                .rule()
                .add()
                .v4()
                .table_id(rule.table)
                .priority(rule.priority)
                .fw_mark(rule.mark)
                .action(RuleAction::ToTable);
            let msg = add.message_mut();
            msg.attributes.push(RuleAttribute::FwMask(rule.mark));
            msg.header.flags |= RuleFlags::Invert;
            add.execute()
                .await
                .map_err(nl("adding the WireGuard routing rule"))?;
            writes += 1;
        }
        Ok(writes)
    })
    .await
}

/// The MTU of the interface holding `node_ip` (the node's uplink), else the smallest MTU of the
/// node's other up interfaces (not loopback, pods' veths or the device itself), else 1500.
pub async fn host_mtu(
    sock: &RouteNetlink,
    node_ip: Option<Ipv4Addr>,
    skip: &str,
) -> Result<u32, String> {
    let skip = skip.to_string();
    run(sock, move |h| async move {
        let links: Vec<LinkMessage> = h
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(nl("reading the interfaces"))?;
        if let Some(ip) = node_ip {
            let addrs: Vec<AddressMessage> = h
                .address()
                .get()
                .execute()
                .try_collect()
                .await
                .map_err(nl("reading the addresses"))?;
            let uplink = addrs.iter().find(|a| address_of(a) == Some(ip));
            if let Some(m) =
                uplink.and_then(|a| links.iter().find(|l| l.header.index == a.header.index))
            {
                return Ok(mtu_of(m).unwrap_or(1500));
            }
        }
        let name = |l: &LinkMessage| {
            l.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            })
        };
        Ok(links
            .iter()
            .filter(|l| l.header.flags.contains(LinkFlags::Up))
            .filter(|l| !l.header.flags.contains(LinkFlags::Loopback))
            .filter(|l| name(l).is_some_and(|n| n != skip && !n.starts_with("cali")))
            .filter_map(mtu_of)
            .min()
            .unwrap_or(1500))
    })
    .await
}
