//! The per-kind checks: each runs its kind's schema rules, then the rules CEL cannot express or
//! that the typed model makes easier, reporting every violation by rule id.
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

use super::checker::{Checker, pattern};
use super::{ValidationErrors, WG_KEY_PATTERN};
use crate::api;
use crate::values::PeerAddress;

pub(super) fn name_of(meta: &kube::core::ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("")
}

/// Parses a CIDR as the API server's `isCIDR` does (host bits allowed; masked separately).
pub(super) fn parse_cidr(s: &str) -> Option<IpNet> {
    IpNet::from_str(s).ok()
}

/// Two prefixes overlap exactly when one contains the other's network address.
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn overlaps_str(a: &IpNet, b: &str) -> bool {
    let b: IpNet = b.parse().expect("constant CIDR");
    is_v4(a) == is_v4(&b) && overlaps(a, &b)
}

fn selector_ok(s: &Option<String>) -> bool {
    s.as_deref()
        .is_none_or(|s| crate::selector::Selector::parse(s).is_ok())
}

fn selector_error(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .and_then(|s| crate::selector::Selector::parse(s).err())
        .map(|e| e.to_string())
}

/// Validates an IPPool on its own (creation rules).
pub fn validate_ippool(pool: &api::IPPool) -> Result<(), ValidationErrors> {
    let s = &pool.spec;
    let mut c = Checker::for_object("IPPool", pool);
    let net = parse_cidr(&s.cidr);
    c.check("ippool-cidr-valid", net.is_some(), Some(s.cidr.clone()));
    if let Some(net) = net {
        let v4 = is_v4(&net);
        c.check(
            "ippool-cidr-masked",
            net.trunc() == net,
            Some(s.cidr.clone()),
        );
        let bs = s.block_size.filter(|b| *b != 0);
        if let Some(b) = bs {
            if v4 {
                c.check(
                    "ippool-blocksize-v4",
                    (20..=32).contains(&b),
                    Some(b.to_string()),
                );
            } else {
                c.check(
                    "ippool-blocksize-v6",
                    (116..=128).contains(&b),
                    Some(b.to_string()),
                );
            }
        }
        let effective = s.effective_block_size(!v4);
        c.check(
            "ippool-prefix-fits-block",
            s.disabled || i32::from(net.prefix_len()) <= effective,
            Some(format!(
                "prefix /{} with blockSize {effective}",
                net.prefix_len()
            )),
        );
        c.check(
            "ippool-ipip-v4-only",
            v4 || mode_off(s.ipip_mode),
            s.ipip_mode.map(|m| format!("{m:?}")),
        );
        let (ll, lo, mc) = if v4 {
            (
                overlaps_str(&net, "169.254.0.0/16"),
                overlaps_str(&net, "127.0.0.0/8"),
                overlaps_str(&net, "224.0.0.0/4"),
            )
        } else {
            (
                overlaps_str(&net, "fe80::/10"),
                net.contains(&"::1".parse::<IpAddr>().expect("const")),
                overlaps_str(&net, "ff00::/8"),
            )
        };
        c.check("ippool-not-link-local", !ll, Some(s.cidr.clone()));
        c.check("ippool-not-loopback", !lo, Some(s.cidr.clone()));
        c.check("ippool-not-multicast", !mc, Some(s.cidr.clone()));
    }
    c.check(
        "ippool-encap-exclusive",
        mode_off(s.ipip_mode) || mode_off(s.vxlan_mode),
        None,
    );
    let uses = s.allowed_uses.clone().unwrap_or_default();
    let lb = uses.contains(&api::ippool::AllowedUse::LoadBalancer);
    if lb {
        c.check(
            "ippool-lb-exclusive",
            uses.iter()
                .all(|u| *u == api::ippool::AllowedUse::LoadBalancer),
            None,
        );
        c.check(
            "ippool-lb-no-encap",
            mode_off(s.ipip_mode) && mode_off(s.vxlan_mode),
            None,
        );
        let sel_all = s
            .node_selector
            .as_deref()
            .map(str::trim)
            .is_none_or(|x| x.is_empty() || x == "all()");
        c.check(
            "ippool-lb-all-nodes",
            sel_all && !s.disable_bgp_export,
            s.node_selector.clone(),
        );
    }
    let sel_err =
        selector_error(&s.node_selector).or_else(|| selector_error(&s.namespace_selector));
    c.check(
        "ippool-selector-syntax",
        selector_ok(&s.node_selector) && selector_ok(&s.namespace_selector),
        sel_err,
    );
    c.finish()
}

/// Validates an update of an IPPool: creation rules plus immutability.
pub fn validate_ippool_update(
    old: &api::IPPool,
    new: &api::IPPool,
) -> Result<(), ValidationErrors> {
    let mut errs = validate_ippool(new).err().unwrap_or_default();
    let mut c = Checker::new("IPPool", name_of(&new.metadata));
    c.check(
        "ippool-cidr-immutable",
        old.spec.cidr == new.spec.cidr,
        Some(new.spec.cidr.clone()),
    );
    // Compared after defaulting: adding `blockSize: 26` to a pool that had none changes nothing.
    let bs = |p: &api::IPPool| {
        let v6 = parse_cidr(&p.spec.cidr).is_some_and(|n| !is_v4(&n));
        p.spec.effective_block_size(v6)
    };
    c.check(
        "ippool-blocksize-immutable",
        bs(old) == bs(new),
        Some(bs(new).to_string()),
    );
    let lb = |p: &api::IPPool| {
        p.spec
            .allowed_uses
            .as_ref()
            .is_some_and(|u| u.contains(&api::ippool::AllowedUse::LoadBalancer))
    };
    c.check("ippool-loadbalancer-immutable", lb(old) == lb(new), None);
    errs.0.extend(c.out);
    errs.into_result()
}

fn mode_off(m: Option<api::ippool::EncapMode>) -> bool {
    m.is_none_or(|m| m == api::ippool::EncapMode::Never)
}

/// Validates a BGPPeer.
pub fn validate_bgppeer(peer: &api::BGPPeer) -> Result<(), ValidationErrors> {
    let s = &peer.spec;
    let mut c = Checker::for_object("BGPPeer", peer);
    let set = |x: &Option<String>| x.as_deref().is_some_and(|x| !x.is_empty());
    if let Some(ip) = &s.peer_ip {
        c.check(
            "bgppeer-peerip-syntax",
            PeerAddress::parse(ip).is_ok(),
            Some(ip.clone()),
        );
    }
    c.check(
        "bgppeer-node-exclusive",
        !(set(&s.node) && set(&s.node_selector)),
        None,
    );
    c.check(
        "bgppeer-peer-exclusive",
        !(set(&s.peer_ip) && set(&s.peer_selector)),
        None,
    );
    c.check(
        "bgppeer-peerselector-no-asn",
        !(set(&s.peer_selector) && s.as_number.is_some()),
        s.as_number.map(|a| a.to_string()),
    );
    c.check(
        "bgppeer-nexthop-exclusive",
        !(s.keep_original_next_hop && s.next_hop_mode.is_some()),
        None,
    );
    if s.local_workload_selector.is_some() {
        c.check(
            "bgppeer-local-workload",
            s.as_number.is_some() && s.peer_ip.is_none() && s.peer_selector.is_none(),
            None,
        );
    }
    if let Some(gw) = &s.reachable_by {
        let peer_family = s
            .peer_ip
            .as_deref()
            .and_then(|p| PeerAddress::parse(p).ok())
            .map(|p| p.ip.is_ipv4());
        let gw_family = gw.parse::<IpAddr>().ok().map(|ip| ip.is_ipv4());
        c.check(
            "bgppeer-reachableby",
            peer_family.is_some() && peer_family == gw_family,
            Some(gw.clone()),
        );
    }
    let sel_err = selector_error(&s.node_selector).or_else(|| selector_error(&s.peer_selector));
    c.check(
        "bgppeer-selector-syntax",
        selector_ok(&s.node_selector) && selector_ok(&s.peer_selector),
        sel_err,
    );
    c.finish()
}

fn is_per_node_or_default(name: &str) -> bool {
    name == "default" || name.starts_with("node.")
}

/// Validates a BGPConfiguration.
pub fn validate_bgpconfiguration(cfg: &api::BGPConfiguration) -> Result<(), ValidationErrors> {
    let s = &cfg.spec;
    let name = name_of(&cfg.metadata);
    let mut c = Checker::for_object("BGPConfiguration", cfg);
    c.check(
        "bgpconfig-name",
        is_per_node_or_default(name),
        Some(name.to_string()),
    );
    let global_only = s.node_to_node_mesh_enabled.is_some()
        || s.as_number.is_some()
        || !s.service_cluster_ips.is_empty()
        || !s.service_external_ips.is_empty()
        || !s.service_load_balancer_ips.is_empty()
        || s.node_mesh_password.is_some()
        || s.node_mesh_max_restart_time.is_some();
    c.check(
        "bgpconfig-default-only",
        name == "default" || !global_only,
        None,
    );
    let mesh_off = s.node_to_node_mesh_enabled == Some(false);
    c.check(
        "bgpconfig-mesh-password",
        !(mesh_off && (s.node_mesh_password.is_some() || s.node_mesh_max_restart_time.is_some())),
        None,
    );
    let bad = s
        .communities
        .iter()
        .find(|cm| parse_community(&cm.value).is_none());
    c.check(
        "bgpconfig-community-value",
        bad.is_none(),
        bad.map(|cm| cm.value.clone()),
    );
    c.check(
        "bgpconfig-communities-used",
        s.communities.is_empty() || !s.prefix_advertisements.is_empty(),
        None,
    );
    let literal = |n: &str| {
        let parts: Vec<&str> = n.split(':').collect();
        (2..=3).contains(&parts.len())
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    };
    let undefined = s
        .prefix_advertisements
        .iter()
        .flat_map(|p| p.communities.iter())
        .find(|n| !literal(n) && !s.communities.iter().any(|c| &c.name == *n));
    c.check(
        "bgpconfig-community-defined",
        undefined.is_none(),
        undefined.cloned(),
    );
    c.finish()
}

/// A BGP community value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommunityValue {
    /// `aa:nn`, each part 16 bits.
    Standard(u16, u16),
    /// `aa:nn:mm`, each part 32 bits.
    Large(u32, u32, u32),
}

/// Parses a community value (`aa:nn` with 16-bit parts, or `aa:nn:mm` with 32-bit parts): the
/// one parser of community values, used by validation and by BIRD rendering.
pub fn parse_community(v: &str) -> Option<CommunityValue> {
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    let parts: Vec<&str> = v.split(':').collect();
    if !parts.iter().all(|p| digits(p)) {
        return None;
    }
    match parts[..] {
        [a, b] => Some(CommunityValue::Standard(a.parse().ok()?, b.parse().ok()?)),
        [a, b, c] => Some(CommunityValue::Large(
            a.parse().ok()?,
            b.parse().ok()?,
            c.parse().ok()?,
        )),
        _ => None,
    }
}

/// Validates a FelixConfiguration.
pub fn validate_felixconfiguration(cfg: &api::FelixConfiguration) -> Result<(), ValidationErrors> {
    let s = &cfg.spec;
    let name = name_of(&cfg.metadata);
    let mut c = Checker::for_object("FelixConfiguration", cfg);
    c.check(
        "felix-name",
        is_per_node_or_default(name),
        Some(name.to_string()),
    );
    let mtu_ok = |m: Option<i32>, min: i32| m.is_none_or(|m| m == 0 || (min..=65535).contains(&m));
    c.check(
        "felix-wireguard-mtu",
        mtu_ok(s.wireguard_mtu, 68),
        s.wireguard_mtu.map(|m| m.to_string()),
    );
    c.check(
        "felix-wireguard-mtu-v6",
        mtu_ok(s.wireguard_mtu_v6, 1280),
        s.wireguard_mtu_v6.map(|m| m.to_string()),
    );
    c.check(
        "felix-vxlan-mtu",
        mtu_ok(s.vxlan_mtu, 68) && mtu_ok(s.ipip_mtu, 68),
        None,
    );
    let bad = s
        .route_table_ranges
        .iter()
        .flatten()
        .find(|r| !(r.min >= 1 && r.min <= r.max && r.max <= 4_294_967_295));
    c.check(
        "felix-route-table-ranges",
        bad.is_none(),
        bad.map(|r| format!("{}-{}", r.min, r.max)),
    );
    c.finish()
}

/// Validates a Calico Node.
pub fn validate_node(node: &api::Node) -> Result<(), ValidationErrors> {
    let mut c = Checker::for_object("Node", node);
    if let Some(v4) = node
        .spec
        .bgp
        .as_ref()
        .and_then(|b| b.ipv4_address.as_deref())
    {
        c.check(
            "node-bgp-ipv4",
            parse_cidr(v4).is_some_and(|n| is_v4(&n)),
            Some(v4.to_string()),
        );
    }
    c.finish()
}

/// Validates an IPAMBlock.
pub fn validate_ipamblock(block: &api::IPAMBlock) -> Result<(), ValidationErrors> {
    let s = &block.spec;
    let mut c = Checker::for_object("IPAMBlock", block);
    let net = parse_cidr(&s.cidr);
    c.check(
        "ipamblock-cidr",
        net.is_some_and(|n| n.trunc() == n),
        Some(s.cidr.clone()),
    );
    if let Some(n) = net {
        let host_bits = n.max_prefix_len() - n.prefix_len();
        let ok = host_bits <= 12 && s.allocations.len() == 1usize << host_bits;
        let shown = format!("{} entries for {}", s.allocations.len(), s.cidr);
        c.check("ipamblock-ordinals", ok, Some(shown));
    }
    c.finish()
}

/// Validates a NodeNetworkState.
pub fn validate_nodenetworkstate(nns: &api::NodeNetworkState) -> Result<(), ValidationErrors> {
    let name = name_of(&nns.metadata);
    let mut c = Checker::for_object("NodeNetworkState", nns);
    c.check(
        "nns-name",
        is_dns_subdomain(name) && name == nns.spec.node,
        Some(name.to_string()),
    );
    c.finish()
}

/// Lower-case RFC 1123 subdomain, as Kubernetes requires of node names.
pub fn is_dns_subdomain(s: &str) -> bool {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    !s.is_empty() && s.len() <= 253 && s.split('.').all(label_ok)
}

/// A base64 WireGuard key: 32 bytes, i.e. 43 base64 characters and one '='.
pub fn is_wireguard_key(s: &str) -> bool {
    pattern(WG_KEY_PATTERN).is_match(s)
}

pub(super) fn is_v4(n: &IpNet) -> bool {
    matches!(n, IpNet::V4(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wireguard_key_shape() {
        assert!(is_wireguard_key(
            "Gx7A7Sf27JT3H5S11wciL6PTpGwSloipBGhjzKGTsw0="
        ));
        assert!(
            !is_wireguard_key("Gx7A7Sf27JT3H5S11wciL6PTpGwSloipBGhjzKGTsw1="),
            "non-canonical last char"
        );
        assert!(!is_wireguard_key("short="));
    }

    #[test]
    fn duration_pattern_and_parser_agree() {
        use crate::values::GoDuration;
        let re = pattern(super::super::DURATION_PATTERN);
        for v in [
            "120s", "1.5m", ".5s", "5.s", "1h30m", "0", "+0", "+5s", "3µs", "3μs", "1500ms", "",
            "1", "s", ".s", "1d", "1.5", "1 s", "-1s", "00", "1e3s", "10", "2x",
        ] {
            assert_eq!(
                re.is_match(v),
                GoDuration::parse(v).is_ok(),
                "pattern and parser disagree on {v:?}"
            );
        }
    }

    #[test]
    fn community_values_are_range_checked() {
        assert_eq!(
            parse_community("65535:0"),
            Some(CommunityValue::Standard(65535, 0))
        );
        assert_eq!(
            parse_community("4294967295:1:2"),
            Some(CommunityValue::Large(4_294_967_295, 1, 2))
        );
        for bad in [
            "65536:1",
            "1:65536",
            "4294967296:1:1",
            "1",
            "1:2:3:4",
            "a:1",
            "1:",
            ":1",
        ] {
            assert_eq!(parse_community(bad), None, "{bad}");
        }
    }
}
