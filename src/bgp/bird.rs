//! BIRD 2 config rendering, equivalent to what Calico's confd templates produce for BIRD 1.
//!
//! Differences from Calico's files that are deliberate:
//! - one file instead of bird.cfg + bird_aggr.cfg + bird_ipam.cfg;
//! - channel options (`gateway recursive`, `add paths on`) are spelled in each protocol's `ipv4`
//!   block, so nothing depends on how BIRD 2 merges a template's channel into a protocol's;
//! - the kernel export filter accepts only static (own blackholes) and BGP routes: with `learn` on,
//!   BIRD sees every alien kernel route, and none of those may be written back;
//! - BIRD 2 has no `krt_tunnel`: an IP-in-IP route is sent to the kernel as `ifname = "tunl0";
//!   onlink = true;`, which gives the same `via <node> dev tunl0 onlink` route;
//! - the kernel protocol exports with `metric 0`, so `ip route` prints the seed's lines (BIRD 2's
//!   default metric 32 would add `metric 32`);
//! - Calico's `listen bgp [address A] [port P]` (BIRD 1) becomes `local port P` and `strict bind on`;
//! - `timeformat protocol iso short`, so `show protocols` prints HH:MM:SS as calicoctl shows it.
use std::collections::BTreeMap;
use std::fmt::Write as _;

use ipnet::Ipv4Net;

use crate::api::bgp::{BindMode, SourceAddress};
use crate::api::ippool::EncapMode;
use crate::api::nodestate::{BGPPeerTarget, NodeBGPState};

use super::view::DEFAULT_LISTEN_PORT;

/// A pool as the export and kernel filters see it.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExportPool {
    /// The pool CIDR: routes inside it are advertised.
    pub cidr: Ipv4Net,
    /// `disableBGPExport`: routes inside it are never advertised.
    pub disable_bgp_export: bool,
    /// `ipipMode`: learned routes inside it go to the kernel through `tunl0` (Always), or through
    /// `tunl0` only when the next hop is off this node's subnet (CrossSubnet).
    pub ipip_mode: EncapMode,
    /// `vxlanMode` other than Never: its routes are never sent to the kernel (the agent programs
    /// VXLAN routes itself, as Felix does).
    pub vxlan_mode: EncapMode,
}

/// Everything one node's bird.conf is made of.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeBirdInput {
    /// Node name, for the header.
    pub node: String,
    /// The node's BGP state (its NodeNetworkState `spec.bgp`).
    pub bgp: NodeBGPState,
    /// Mesh sessions, from [`super::mesh_sessions`].
    pub mesh: Vec<BGPPeerTarget>,
    /// The node's own confirmed blocks: each is advertised as one aggregate route.
    pub blocks: Vec<Ipv4Net>,
    /// All IPv4 pools.
    pub pools: Vec<ExportPool>,
    /// The interface `protocol direct` reads (the node's BGP interface, e.g. `ens4`). None: every
    /// interface except `cali*`, `kube-ipvs*` and the ignored ones, as Calico does.
    pub interface: Option<String>,
    /// Resolved session passwords by protocol name (the agent reads the Secrets).
    pub passwords: BTreeMap<String, String>,
    /// Log file; None leaves BIRD's default (syslog).
    pub log_file: Option<String>,
    /// FelixConfiguration `programClusterRoutes: Enabled`: the agent programs the routes of
    /// IP-in-IP pools and the same-subnet routes of unencapsulated pools, so the kernel filter
    /// keeps BIRD off them (see `crate::overlay`'s routing-ownership table).
    pub program_cluster_routes: bool,
}

/// A value BIRD's config language cannot carry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} cannot be written into bird.conf: BIRD strings cannot contain '\"' or a line break"
)]
pub struct BirdConfigError {
    /// Which value, e.g. `password of Global_10_0_0_1` (never the value itself).
    pub what: String,
}

/// A BIRD string literal. BIRD has no escapes (a backslash is kept as is), so `"` and line breaks
/// are refused rather than silently changing the value.
fn quote(s: &str, what: impl FnOnce() -> String) -> Result<String, BirdConfigError> {
    if s.contains(['"', '\n', '\r']) {
        return Err(BirdConfigError { what: what() });
    }
    Ok(format!("\"{s}\""))
}

fn debug_line(severity: Option<&str>) -> Option<&'static str> {
    match severity.map(str::to_ascii_lowercase).as_deref() {
        Some("debug") => Some("debug all;"),
        Some("none") => None,
        _ => Some("debug { states };"),
    }
}

/// A complete bird.conf for BIRD 2 (checked against Debian's bird2 2.0.12). Deterministic: the
/// same input, in any order, gives the same bytes. Fails only on a string BIRD cannot quote.
pub fn render_bird_config(input: &NodeBirdInput) -> Result<String, BirdConfigError> {
    let bgp = &input.bgp;
    let ip = bgp.ipv4_address;
    let mut blocks: Vec<Ipv4Net> = input.blocks.iter().map(Ipv4Net::trunc).collect();
    blocks.sort();
    blocks.dedup();
    let mut pools = input.pools.clone();
    pools.sort();
    pools.dedup();
    let mut mesh = input.mesh.clone();
    mesh.sort_by(|a, b| a.name.cmp(&b.name));
    let mut explicit = bgp.peers.clone();
    explicit.sort_by(|a, b| (a.peer_type, &a.name).cmp(&(b.peer_type, &b.name)));

    let mut c = String::new();
    let w = &mut c;
    let _ = writeln!(
        w,
        "# BIRD 2 configuration of node {}, generated by Ocelot. Edits are overwritten.",
        input.node
    );
    if let Some(log) = &input.log_file {
        let _ = writeln!(w, "log {} all;", quote(log, || "log file".into())?);
    }
    let _ = writeln!(w, "router id {ip};");
    let _ = writeln!(w, "timeformat protocol iso short;");
    // Filters.
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "# Only own blackholes (static) and learned routes (BGP) go to the kernel."
    );
    let _ = writeln!(w, "filter calico_kernel_programming {{");
    for cidr in &bgp.service_cidrs {
        let _ = writeln!(
            w,
            "  if ( net ~ {cidr} ) then {{ reject; }} # advertised service range, not a kernel route"
        );
    }
    for p in &pools {
        kernel_pool_rule(w, p, bgp.ipv4_network, input.program_cluster_routes);
    }
    let _ = writeln!(w, "  if source = RTS_BGP then accept;");
    let _ = writeln!(w, "  if source = RTS_STATIC then accept;");
    let _ = writeln!(w, "  reject;");
    let _ = writeln!(w, "}}");
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "# Communities for advertised prefixes (BGPConfiguration prefixAdvertisements)."
    );
    let _ = writeln!(w, "function apply_communities() {{");
    for pa in &bgp.prefix_advertisements {
        let mut adds: Vec<String> = pa
            .standard
            .iter()
            .map(|[a, b]| format!("bgp_community.add(({a}, {b}));"))
            .collect();
        adds.extend(
            pa.large
                .iter()
                .map(|[a, b, c]| format!("bgp_large_community.add(({a}, {b}, {c}));")),
        );
        let _ = writeln!(
            w,
            "  if ( net ~ {} ) then {{ {} }}",
            pa.cidr,
            adds.join(" ")
        );
    }
    let _ = writeln!(w, "}}");
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "# Own blocks are advertised whole; the pod routes inside them are not."
    );
    let _ = writeln!(w, "function calico_aggr() {{");
    for b in blocks.iter().filter(|b| b.prefix_len() < 32) {
        let _ = writeln!(w, "  if ( net = {b} ) then {{ accept; }}");
        let _ = writeln!(w, "  if ( net ~ {b} ) then {{ reject; }}");
    }
    let _ = writeln!(w, "}}");
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "function calico_export_to_bgp_peers(bool internal_peer) {{"
    );
    for p in pools.iter().filter(|p| p.disable_bgp_export) {
        let _ = writeln!(
            w,
            "  if ( net ~ {} ) then {{ reject; }} # disableBGPExport",
            p.cidr
        );
    }
    let _ = writeln!(
        w,
        "  # Tunnel device routes (wireguard.cali, vxlan.calico) are never sent to iBGP peers."
    );
    let _ = writeln!(
        w,
        "  if ( internal_peer && (ifname ~ \"*.cali\" || ifname ~ \"*.calico\") ) then {{ reject; }}"
    );
    let _ = writeln!(w, "  if ( ifname ~ \"bpf*.cali\" ) then {{ reject; }}");
    let _ = writeln!(w, "  apply_communities();");
    let _ = writeln!(w, "  calico_aggr();");
    for cidr in &bgp.service_cidrs {
        let _ = writeln!(
            w,
            "  if ( net ~ {cidr} ) then {{ accept; }} # service range"
        );
    }
    for p in pools.iter().filter(|p| !p.disable_bgp_export) {
        let _ = writeln!(w, "  if ( net ~ {} ) then {{ accept; }}", p.cidr);
    }
    let _ = writeln!(w, "}}");

    // Kernel, interfaces, own routes.
    let _ = writeln!(w);
    let _ = writeln!(w, "protocol device {{");
    let _ = writeln!(w, "  scan time 2;");
    let _ = writeln!(w, "}}");
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "# Next hops of iBGP routes resolve recursively through these connected routes."
    );
    let _ = writeln!(w, "protocol direct {{");
    let _ = writeln!(w, "  ipv4;");
    match &input.interface {
        Some(iface) => {
            let _ = writeln!(w, "  interface {};", quote(iface, || "interface".into())?);
        }
        None => {
            let mut pats = vec!["-\"cali*\"".to_string(), "-\"kube-ipvs*\"".to_string()];
            let mut ignored = bgp.ignored_interfaces.clone();
            ignored.sort();
            ignored.dedup();
            for i in &ignored {
                pats.push(format!("-{}", quote(i, || "ignored interface".into())?));
            }
            pats.push("\"*\"".to_string());
            let _ = writeln!(w, "  interface {};", pats.join(", "));
        }
    }
    let _ = writeln!(w, "}}");
    let _ = writeln!(w);
    let _ = writeln!(w, "protocol kernel {{");
    let _ = writeln!(
        w,
        "  metric 0; # as Calico's routes: ip route shows no metric"
    );
    let _ = writeln!(w, "  ipv4 {{");
    let _ = writeln!(w, "    import all;");
    let _ = writeln!(w, "    export filter calico_kernel_programming;");
    let _ = writeln!(w, "  }};");
    let _ = writeln!(
        w,
        "  learn; # borrowed pod /32s in the kernel are advertised"
    );
    let _ = writeln!(
        w,
        "  persist; # an agent or BIRD restart keeps the routes in place"
    );
    let _ = writeln!(w, "  scan time 2;");
    let _ = writeln!(w, "  merge paths on;");
    let _ = writeln!(w, "  graceful restart;");
    let _ = writeln!(w, "}}");

    let mut statics: Vec<String> = blocks
        .iter()
        .filter(|b| b.prefix_len() < 32)
        .map(|b| format!("  route {b} blackhole;"))
        .collect();
    statics.extend(
        bgp.service_cidrs
            .iter()
            .map(|c| format!("  route {c} blackhole;")),
    );
    let mut reach: Vec<String> = explicit
        .iter()
        .filter_map(|s| {
            let gw = s.reachable_by?;
            Some(format!("  route {}/32 via {gw};", s.peer_ip))
        })
        .collect();
    reach.sort();
    reach.dedup();
    statics.extend(reach);
    if !statics.is_empty() {
        let _ = writeln!(w);
        let _ = writeln!(w, "protocol static {{");
        let _ = writeln!(w, "  ipv4;");
        for s in statics {
            let _ = writeln!(w, "{s}");
        }
        let _ = writeln!(w, "}}");
    }

    // Sessions.
    let _ = writeln!(w);
    let _ = writeln!(w, "template bgp bgp_template {{");
    if let Some(d) = debug_line(bgp.log_severity.as_deref()) {
        let _ = writeln!(w, "  {d}");
    }
    let _ = writeln!(w, "  description \"Connection to BGP peer\";");
    // BIRD 2 has no global `listen bgp`: the port and the bind address are per-protocol options.
    if bgp.listen_port == DEFAULT_LISTEN_PORT {
        let _ = writeln!(w, "  local as {};", bgp.as_number);
    } else {
        let _ = writeln!(w, "  local port {} as {};", bgp.listen_port, bgp.as_number);
    }
    if bgp.bind_mode == Some(BindMode::NodeIP) {
        let _ = writeln!(
            w,
            "  strict bind on; # bindMode NodeIP: listen on the source address only"
        );
    }
    let _ = writeln!(w, "  multihop;");
    let _ = writeln!(w, "  graceful restart;");
    let _ = writeln!(w, "  connect delay time 2;");
    let _ = writeln!(w, "  connect retry time 5;");
    let _ = writeln!(w, "  error wait time 5,30;");
    let _ = writeln!(w, "}}");
    if !mesh.is_empty() {
        let _ = writeln!(w);
        let _ = writeln!(w, "# Node-to-node mesh.");
        for s in &mesh {
            session(w, input, s)?;
        }
    }
    if !explicit.is_empty() {
        let _ = writeln!(w);
        let _ = writeln!(w, "# BGPPeers.");
        for s in &explicit {
            session(w, input, s)?;
        }
    }
    Ok(c)
}

fn session(
    w: &mut String,
    input: &NodeBirdInput,
    s: &BGPPeerTarget,
) -> Result<(), BirdConfigError> {
    let bgp = &input.bgp;
    let local_as = s.local_as_number.unwrap_or(bgp.as_number);
    let internal = s.as_number == local_as;
    let _ = writeln!(w, "protocol bgp {} from bgp_template {{", s.name);
    let description = format!("{} {}", s.peer_type.as_str(), s.source);
    let description = quote(&description, || format!("description of {}", s.name))?;
    let _ = writeln!(w, "  description {description};");
    if s.local_as_number.is_some() {
        let _ = writeln!(w, "  local as {local_as};");
    }
    let port = s.port.map(|p| format!(" port {p}")).unwrap_or_default();
    let _ = writeln!(w, "  neighbor {}{port} as {};", s.peer_ip, s.as_number);
    if s.source_address != Some(SourceAddress::None) {
        let _ = writeln!(w, "  source address {};", bgp.ipv4_address);
    }
    if let Some(hops) = s.ttl_security {
        let _ = writeln!(w, "  ttl security on;");
        let _ = writeln!(w, "  multihop {hops};");
    }
    if s.passive {
        let _ = writeln!(
            w,
            "  passive on; # the peer has the greater address and dials"
        );
    }
    if s.route_reflector_client
        && let Some(cid) = &bgp.route_reflector_cluster_id
    {
        let _ = writeln!(w, "  rr client;");
        let _ = writeln!(w, "  rr cluster id {cid};");
    }
    if let Some(secs) = s.restart_seconds {
        let _ = writeln!(w, "  graceful restart time {secs};");
    }
    if let Some(secs) = s.keepalive_seconds.filter(|s| *s > 0) {
        let _ = writeln!(w, "  keepalive time {secs};");
    }
    if let Some(n) = s.num_allowed_local_as_numbers.filter(|n| *n > 0) {
        let _ = writeln!(w, "  allow local as {n};");
    }
    if let Some(pw) = input.passwords.get(&s.name) {
        let _ = writeln!(
            w,
            "  password {};",
            quote(pw, || format!("password of {}", s.name))?
        );
    }
    let _ = writeln!(w, "  ipv4 {{");
    let _ = writeln!(w, "    gateway recursive;");
    let _ = writeln!(w, "    add paths on;");
    let _ = writeln!(w, "    import all;");
    let _ = writeln!(
        w,
        "    export filter {{ calico_export_to_bgp_peers({internal}); reject; }};"
    );
    if s.keep_original_next_hop && !internal {
        let _ = writeln!(w, "    next hop keep;");
    }
    let _ = writeln!(w, "  }};");
    let _ = writeln!(w, "}}");
    Ok(())
}

/// One pool's line in `calico_kernel_programming`, as Calico's `bird_ipam.cfg` template writes it.
///
/// Calico's template (BIRD 1), per pool `if ( net ~ <cidr> ) then { ... }`: VXLAN pools
/// `reject;`; IPIP `krt_tunnel = "tunl0"; accept;`; IPIP cross-subnet `if defined(bgp_next_hop)
/// && ( bgp_next_hop ~ <network_v4> ) then krt_tunnel = ""; else krt_tunnel = "tunl0"; accept;`.
/// BIRD 2 spells `krt_tunnel = "tunl0"` as `ifname = "tunl0"; onlink = true;` and leaving the
/// route alone as `krt_tunnel = ""`. With `program_cluster_routes` the pools the agent owns are
/// rejected instead.
fn kernel_pool_rule(
    w: &mut String,
    p: &ExportPool,
    network: Option<Ipv4Net>,
    program_cluster_routes: bool,
) {
    if p.vxlan_mode != EncapMode::Never {
        let _ = writeln!(
            w,
            "  if ( net ~ {} ) then {{ reject; }} # VXLAN: the agent programs these routes",
            p.cidr
        );
        return;
    }
    if program_cluster_routes {
        match (p.ipip_mode, network) {
            (EncapMode::Never, None) => {}
            (EncapMode::Never, Some(net)) => {
                let _ = writeln!(
                    w,
                    "  if ( net ~ {} && defined(bgp_next_hop) && bgp_next_hop ~ {net} ) then {{ reject; }} # programClusterRoutes: the agent programs same-subnet routes",
                    p.cidr
                );
            }
            _ => {
                let _ = writeln!(
                    w,
                    "  if ( net ~ {} ) then {{ reject; }} # IPIP, programClusterRoutes: the agent programs these routes",
                    p.cidr
                );
            }
        }
        return;
    }
    match (p.ipip_mode, network) {
        (EncapMode::Never, _) => {}
        (EncapMode::CrossSubnet, Some(net)) => {
            let _ = writeln!(
                w,
                "  if ( net ~ {} && source = RTS_BGP ) then {{ if !( defined(bgp_next_hop) && bgp_next_hop ~ {net} ) then {{ ifname = \"tunl0\"; onlink = true; }} accept; }} # IPIP CrossSubnet",
                p.cidr
            );
        }
        // Always, or CrossSubnet without a known subnet (every next hop counts as remote).
        _ => {
            let _ = writeln!(
                w,
                "  if ( net ~ {} && source = RTS_BGP ) then {{ ifname = \"tunl0\"; onlink = true; accept; }} # IPIP",
                p.cidr
            );
        }
    }
}
