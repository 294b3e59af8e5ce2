//! Single-object validation rules, one table for two enforcers: the Rust checks below (used by the
//! operator, `ocelotctl validate`, and tests) and the CRD schema/CEL the API server enforces
//! (injected by [`crate::crds`]). A test proves every CEL rule has a Rust twin refused by a fixture.
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

use crate::api;

/// Where a rule is attached in the CRD schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The whole object (`self` is the object; used for metadata.name rules).
    Root,
    /// The spec (`self` is the spec).
    Spec,
    /// The status (`self` is the status).
    Status,
}

/// How the API server enforces a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// A CEL expression; true means valid.
    Cel(&'static str),
    /// OpenAPI minimum/maximum on an integer field.
    Range { min: i64, max: i64 },
    /// OpenAPI pattern on a string field.
    Pattern(&'static str),
    /// OpenAPI maxLength on a string field.
    MaxLength(u32),
    /// OpenAPI maxItems on a list field. Bounds like this one also keep the CEL cost estimate of the
    /// rules that walk the field under the API server's budget.
    MaxItems(u32),
    /// Needs other objects or a parser CEL lacks; enforced by the operator and `ocelotctl validate`.
    RustOnly,
}

/// One validation rule.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Stable identifier, e.g. `ippool-cidr-masked`.
    pub id: &'static str,
    /// The kind it applies to.
    pub kind: &'static str,
    /// Where it is attached in the schema.
    pub scope: Scope,
    /// Full path of the field it concerns, e.g. `spec.cidr`.
    pub field: &'static str,
    /// What is required, in words (also the API server's message).
    pub message: &'static str,
    /// How the API server enforces it.
    pub check: Check,
    /// The rule compares against the previous object (oldSelf); only checked on update.
    pub transition: bool,
}

impl Rule {
    /// The field path relative to the rule's scope (`cidr` for `spec.cidr` in spec scope).
    pub fn field_in_scope(&self) -> &'static str {
        let prefix = match self.scope {
            Scope::Root => "",
            Scope::Spec => "spec.",
            Scope::Status => "status.",
        };
        self.field.strip_prefix(prefix).unwrap_or(self.field)
    }

    /// CEL `fieldPath` so the API server names the field; none for metadata (not in the schema).
    pub fn cel_field_path(&self) -> Option<String> {
        if self.field.starts_with("metadata.") {
            return None;
        }
        Some(format!(".{}", self.field_in_scope()))
    }
}

const fn rule(
    id: &'static str,
    kind: &'static str,
    scope: Scope,
    field: &'static str,
    message: &'static str,
    check: Check,
) -> Rule {
    Rule {
        id,
        kind,
        scope,
        field,
        message,
        check,
        transition: false,
    }
}

const fn transition(
    id: &'static str,
    kind: &'static str,
    field: &'static str,
    message: &'static str,
    cel: &'static str,
) -> Rule {
    Rule {
        id,
        kind,
        scope: Scope::Spec,
        field,
        message,
        check: Check::Cel(cel),
        transition: true,
    }
}

use Check::{Cel, MaxItems, MaxLength, Pattern, Range, RustOnly};
use Scope::{Root, Spec, Status};

// CEL guards each rule with `!isCIDR(...) ||` so one bad value yields one clear error, not a cascade.

/// Every single-object rule. Order is the order errors are reported in.
pub static RULES: &[Rule] = &[
    // IPPool
    rule(
        "ippool-cidr-length",
        "IPPool",
        Spec,
        "spec.cidr",
        "cidr must be at most 48 characters",
        MaxLength(48),
    ),
    rule(
        "ippool-node-selector-length",
        "IPPool",
        Spec,
        "spec.nodeSelector",
        "nodeSelector must be at most 1024 characters",
        MaxLength(1024),
    ),
    rule(
        "ippool-namespace-selector-length",
        "IPPool",
        Spec,
        "spec.namespaceSelector",
        "namespaceSelector must be at most 1024 characters",
        MaxLength(1024),
    ),
    rule(
        "ippool-allowed-uses-max",
        "IPPool",
        Spec,
        "spec.allowedUses",
        "allowedUses lists at most 3 uses",
        MaxItems(3),
    ),
    rule(
        "ippool-cidr-valid",
        "IPPool",
        Spec,
        "spec.cidr",
        "cidr must be an IPv4 or IPv6 network in CIDR notation, e.g. 198.19.16.0/21",
        Cel("isCIDR(self.cidr)"),
    ),
    rule(
        "ippool-cidr-masked",
        "IPPool",
        Spec,
        "spec.cidr",
        "cidr must be a network address: host bits must be zero (e.g. 198.19.16.0/21, not 198.19.16.1/21)",
        Cel("!isCIDR(self.cidr) || cidr(self.cidr) == cidr(self.cidr).masked()"),
    ),
    rule(
        "ippool-blocksize-v4",
        "IPPool",
        Spec,
        "spec.blockSize",
        "blockSize of an IPv4 pool must be between 20 and 32 (default 26)",
        Cel(
            "!isCIDR(self.cidr) || cidr(self.cidr).ip().family() != 4 || !has(self.blockSize) || self.blockSize == 0 || (self.blockSize >= 20 && self.blockSize <= 32)",
        ),
    ),
    rule(
        "ippool-blocksize-v6",
        "IPPool",
        Spec,
        "spec.blockSize",
        "blockSize of an IPv6 pool must be between 116 and 128 (default 122)",
        Cel(
            "!isCIDR(self.cidr) || cidr(self.cidr).ip().family() != 6 || !has(self.blockSize) || self.blockSize == 0 || (self.blockSize >= 116 && self.blockSize <= 128)",
        ),
    ),
    rule(
        "ippool-prefix-fits-block",
        "IPPool",
        Spec,
        "spec.cidr",
        "the pool's prefix length must not be longer than its blockSize (the pool must hold at least one block) unless the pool is disabled",
        Cel(
            "!isCIDR(self.cidr) || (has(self.disabled) && self.disabled) || cidr(self.cidr).prefixLength() <= ((has(self.blockSize) && self.blockSize != 0) ? self.blockSize : (cidr(self.cidr).ip().family() == 4 ? 26 : 122))",
        ),
    ),
    rule(
        "ippool-encap-exclusive",
        "IPPool",
        Spec,
        "spec.ipipMode",
        "ipipMode and vxlanMode cannot both be enabled on one pool",
        Cel(
            "!(has(self.ipipMode) && self.ipipMode != 'Never' && has(self.vxlanMode) && self.vxlanMode != 'Never')",
        ),
    ),
    rule(
        "ippool-ipip-v4-only",
        "IPPool",
        Spec,
        "spec.ipipMode",
        "ipipMode must be Never on an IPv6 pool (IP-in-IP carries IPv4 only)",
        Cel(
            "!isCIDR(self.cidr) || cidr(self.cidr).ip().family() == 4 || !has(self.ipipMode) || self.ipipMode == 'Never'",
        ),
    ),
    rule(
        "ippool-not-link-local",
        "IPPool",
        Spec,
        "spec.cidr",
        "cidr must not overlap the link-local range (169.254.0.0/16 or fe80::/10)",
        Cel(
            "!isCIDR(self.cidr) || (cidr(self.cidr).ip().family() == 4 ? !(cidr(self.cidr).containsIP('169.254.0.0') || cidr('169.254.0.0/16').containsIP(cidr(self.cidr).ip())) : !(cidr(self.cidr).containsIP('fe80::') || cidr('fe80::/10').containsIP(cidr(self.cidr).ip())))",
        ),
    ),
    rule(
        "ippool-not-loopback",
        "IPPool",
        Spec,
        "spec.cidr",
        "cidr must not overlap the loopback range (127.0.0.0/8 or ::1/128)",
        Cel(
            "!isCIDR(self.cidr) || (cidr(self.cidr).ip().family() == 4 ? !(cidr(self.cidr).containsIP('127.0.0.0') || cidr('127.0.0.0/8').containsIP(cidr(self.cidr).ip())) : !cidr(self.cidr).containsIP('::1'))",
        ),
    ),
    rule(
        "ippool-not-multicast",
        "IPPool",
        Spec,
        "spec.cidr",
        "cidr must not overlap the multicast range (224.0.0.0/4 or ff00::/8)",
        Cel(
            "!isCIDR(self.cidr) || (cidr(self.cidr).ip().family() == 4 ? !(cidr(self.cidr).containsIP('224.0.0.0') || cidr('224.0.0.0/4').containsIP(cidr(self.cidr).ip())) : !(cidr(self.cidr).containsIP('ff00::') || cidr('ff00::/8').containsIP(cidr(self.cidr).ip())))",
        ),
    ),
    rule(
        "ippool-selector-no-global",
        "IPPool",
        Spec,
        "spec.nodeSelector",
        "nodeSelector and namespaceSelector must not use global()",
        Cel(
            "(!has(self.nodeSelector) || !self.nodeSelector.contains('global()')) && (!has(self.namespaceSelector) || !self.namespaceSelector.contains('global()'))",
        ),
    ),
    rule(
        "ippool-lb-exclusive",
        "IPPool",
        Spec,
        "spec.allowedUses",
        "allowedUses LoadBalancer cannot be combined with Workload or Tunnel",
        Cel(
            "!has(self.allowedUses) || !self.allowedUses.exists(u, u == 'LoadBalancer') || self.allowedUses.all(u, u == 'LoadBalancer')",
        ),
    ),
    rule(
        "ippool-lb-no-encap",
        "IPPool",
        Spec,
        "spec.allowedUses",
        "a LoadBalancer pool cannot use IPIP or VXLAN",
        Cel(
            "!has(self.allowedUses) || !self.allowedUses.exists(u, u == 'LoadBalancer') || ((!has(self.ipipMode) || self.ipipMode == 'Never') && (!has(self.vxlanMode) || self.vxlanMode == 'Never'))",
        ),
    ),
    rule(
        "ippool-lb-all-nodes",
        "IPPool",
        Spec,
        "spec.nodeSelector",
        "a LoadBalancer pool must have nodeSelector all() and must not set disableBGPExport",
        Cel(
            "!has(self.allowedUses) || !self.allowedUses.exists(u, u == 'LoadBalancer') || ((!has(self.nodeSelector) || self.nodeSelector.trim() == '' || self.nodeSelector.trim() == 'all()') && !(has(self.disableBGPExport) && self.disableBGPExport))",
        ),
    ),
    rule(
        "ippool-selector-syntax",
        "IPPool",
        Spec,
        "spec.nodeSelector",
        "nodeSelector and namespaceSelector must be valid Calico selectors",
        RustOnly,
    ),
    transition(
        "ippool-cidr-immutable",
        "IPPool",
        "spec.cidr",
        "cidr is immutable; create a new pool instead",
        "self.cidr == oldSelf.cidr",
    ),
    transition(
        "ippool-blocksize-immutable",
        "IPPool",
        "spec.blockSize",
        "blockSize is immutable; create a new pool instead",
        "(has(self.blockSize) ? self.blockSize : 0) == (has(oldSelf.blockSize) ? oldSelf.blockSize : 0)",
    ),
    // BGPPeer
    rule(
        "bgppeer-peerip-length",
        "BGPPeer",
        Spec,
        "spec.peerIP",
        "peerIP must be at most 64 characters",
        MaxLength(64),
    ),
    rule(
        "bgppeer-peerip-syntax",
        "BGPPeer",
        Spec,
        "spec.peerIP",
        "peerIP must be an IP address, IPv4:port or [IPv6]:port with a port from 1 to 65535",
        Cel(
            "!has(self.peerIP) || isIP(self.peerIP) || (self.peerIP.matches('^[0-9.]+:[0-9]{1,5}$') && isIP(self.peerIP.substring(0, self.peerIP.lastIndexOf(':'))) && ip(self.peerIP.substring(0, self.peerIP.lastIndexOf(':'))).family() == 4 && int(self.peerIP.substring(self.peerIP.lastIndexOf(':') + 1)) >= 1 && int(self.peerIP.substring(self.peerIP.lastIndexOf(':') + 1)) <= 65535) || (self.peerIP.matches('^\\\\[[0-9a-fA-F:.]+\\\\]:[0-9]{1,5}$') && isIP(self.peerIP.substring(1, self.peerIP.lastIndexOf(']'))) && int(self.peerIP.substring(self.peerIP.lastIndexOf(':') + 1)) >= 1 && int(self.peerIP.substring(self.peerIP.lastIndexOf(':') + 1)) <= 65535)",
        ),
    ),
    rule(
        "bgppeer-asn-range",
        "BGPPeer",
        Spec,
        "spec.asNumber",
        "asNumber must be between 0 and 4294967295",
        Range {
            min: 0,
            max: 4_294_967_295,
        },
    ),
    rule(
        "bgppeer-node-exclusive",
        "BGPPeer",
        Spec,
        "spec.nodeSelector",
        "node and nodeSelector cannot both be set (neither means all nodes)",
        Cel(
            "!(has(self.node) && self.node != '' && has(self.nodeSelector) && self.nodeSelector != '')",
        ),
    ),
    rule(
        "bgppeer-peer-exclusive",
        "BGPPeer",
        Spec,
        "spec.peerSelector",
        "peerIP and peerSelector cannot both be set",
        Cel(
            "!(has(self.peerIP) && self.peerIP != '' && has(self.peerSelector) && self.peerSelector != '')",
        ),
    ),
    rule(
        "bgppeer-peerselector-no-asn",
        "BGPPeer",
        Spec,
        "spec.asNumber",
        "asNumber must be empty when peerSelector is set (the peer nodes' own AS numbers are used)",
        Cel("!(has(self.peerSelector) && self.peerSelector != '' && has(self.asNumber))"),
    ),
    rule(
        "bgppeer-nexthop-exclusive",
        "BGPPeer",
        Spec,
        "spec.nextHopMode",
        "keepOriginalNextHop and nextHopMode cannot both be set",
        Cel(
            "!(has(self.keepOriginalNextHop) && self.keepOriginalNextHop && has(self.nextHopMode))",
        ),
    ),
    rule(
        "bgppeer-local-workload",
        "BGPPeer",
        Spec,
        "spec.localWorkloadSelector",
        "localWorkloadSelector requires asNumber and excludes peerIP and peerSelector",
        Cel(
            "!has(self.localWorkloadSelector) || (has(self.asNumber) && !has(self.peerIP) && !has(self.peerSelector))",
        ),
    ),
    rule(
        "bgppeer-reachableby",
        "BGPPeer",
        Spec,
        "spec.reachableBy",
        "reachableBy must be an IP address of the same family as peerIP, and requires peerIP",
        Cel(
            "!has(self.reachableBy) || (has(self.peerIP) && isIP(self.reachableBy) && (ip(self.reachableBy).family() == 4) == (self.peerIP.contains('.') && !self.peerIP.contains('[')))",
        ),
    ),
    rule(
        "bgppeer-ttl-range",
        "BGPPeer",
        Spec,
        "spec.ttlSecurity",
        "ttlSecurity must be between 1 and 255 hops",
        Range { min: 1, max: 255 },
    ),
    rule(
        "bgppeer-max-restart-time",
        "BGPPeer",
        Spec,
        "spec.maxRestartTime",
        "maxRestartTime must be a duration such as 120s or 2m",
        Pattern(DURATION_PATTERN),
    ),
    rule(
        "bgppeer-selector-syntax",
        "BGPPeer",
        Spec,
        "spec.nodeSelector",
        "nodeSelector and peerSelector must be valid Calico selectors",
        RustOnly,
    ),
    // BGPConfiguration
    rule(
        "bgpconfig-name",
        "BGPConfiguration",
        Root,
        "metadata.name",
        "a BGPConfiguration must be named default or node.<nodename>",
        Cel("self.metadata.name == 'default' || self.metadata.name.startsWith('node.')"),
    ),
    rule(
        "bgpconfig-default-only",
        "BGPConfiguration",
        Root,
        "spec",
        "nodeToNodeMeshEnabled, asNumber, serviceClusterIPs, serviceExternalIPs, serviceLoadBalancerIPs, nodeMeshPassword and nodeMeshMaxRestartTime may only be set in the BGPConfiguration named default",
        Cel(
            "self.metadata.name == 'default' || !has(self.spec) || !(has(self.spec.nodeToNodeMeshEnabled) || has(self.spec.asNumber) || has(self.spec.serviceClusterIPs) || has(self.spec.serviceExternalIPs) || has(self.spec.serviceLoadBalancerIPs) || has(self.spec.nodeMeshPassword) || has(self.spec.nodeMeshMaxRestartTime))",
        ),
    ),
    rule(
        "bgpconfig-mesh-password",
        "BGPConfiguration",
        Spec,
        "spec.nodeMeshPassword",
        "nodeMeshPassword and nodeMeshMaxRestartTime are invalid when nodeToNodeMeshEnabled is false",
        Cel(
            "!(has(self.nodeToNodeMeshEnabled) && !self.nodeToNodeMeshEnabled && (has(self.nodeMeshPassword) || has(self.nodeMeshMaxRestartTime)))",
        ),
    ),
    rule(
        "bgpconfig-listen-port",
        "BGPConfiguration",
        Spec,
        "spec.listenPort",
        "listenPort must be between 1 and 65535",
        Range { min: 1, max: 65535 },
    ),
    rule(
        "bgpconfig-communities-max",
        "BGPConfiguration",
        Spec,
        "spec.communities",
        "communities lists at most 64 entries",
        MaxItems(64),
    ),
    rule(
        "bgpconfig-community-length",
        "BGPConfiguration",
        Spec,
        "spec.communities[].value",
        "a community value must be at most 32 characters",
        MaxLength(32),
    ),
    rule(
        "bgpconfig-community-value",
        "BGPConfiguration",
        Spec,
        "spec.communities",
        "community values must be aa:nn (standard) or aa:nn:mm (large)",
        Cel(
            "!has(self.communities) || self.communities.all(c, c.value.matches('^[0-9]+:[0-9]+(:[0-9]+)?$'))",
        ),
    ),
    rule(
        "bgpconfig-log-severity",
        "BGPConfiguration",
        Spec,
        "spec.logSeverityScreen",
        "logSeverityScreen must be one of Debug, Info, Warning, Error, Fatal, None",
        Pattern(LOG_SEVERITY_PATTERN),
    ),
    // FelixConfiguration
    rule(
        "felix-name",
        "FelixConfiguration",
        Root,
        "metadata.name",
        "a FelixConfiguration must be named default or node.<nodename>",
        Cel("self.metadata.name == 'default' || self.metadata.name.startsWith('node.')"),
    ),
    rule(
        "felix-wireguard-port",
        "FelixConfiguration",
        Spec,
        "spec.wireguardListeningPort",
        "wireguardListeningPort must be between 1 and 65535",
        Range { min: 1, max: 65535 },
    ),
    rule(
        "felix-wireguard-port-v6",
        "FelixConfiguration",
        Spec,
        "spec.wireguardListeningPortV6",
        "wireguardListeningPortV6 must be between 1 and 65535",
        Range { min: 1, max: 65535 },
    ),
    rule(
        "felix-wireguard-mtu",
        "FelixConfiguration",
        Spec,
        "spec.wireguardMTU",
        "wireguardMTU must be 0 (auto) or between 68 and 65535",
        Cel(
            "!has(self.wireguardMTU) || self.wireguardMTU == 0 || (self.wireguardMTU >= 68 && self.wireguardMTU <= 65535)",
        ),
    ),
    rule(
        "felix-wireguard-mtu-v6",
        "FelixConfiguration",
        Spec,
        "spec.wireguardMTUV6",
        "wireguardMTUV6 must be 0 (auto) or between 1280 and 65535",
        Cel(
            "!has(self.wireguardMTUV6) || self.wireguardMTUV6 == 0 || (self.wireguardMTUV6 >= 1280 && self.wireguardMTUV6 <= 65535)",
        ),
    ),
    rule(
        "felix-vxlan-mtu",
        "FelixConfiguration",
        Spec,
        "spec.vxlanMTU",
        "vxlanMTU and ipipMTU must be 0 (auto) or between 68 and 65535",
        Cel(
            "(!has(self.vxlanMTU) || self.vxlanMTU == 0 || (self.vxlanMTU >= 68 && self.vxlanMTU <= 65535)) && (!has(self.ipipMTU) || self.ipipMTU == 0 || (self.ipipMTU >= 68 && self.ipipMTU <= 65535))",
        ),
    ),
    rule(
        "felix-rule-priority",
        "FelixConfiguration",
        Spec,
        "spec.wireguardRoutingRulePriority",
        "wireguardRoutingRulePriority must be between 1 and 32765",
        Range { min: 1, max: 32765 },
    ),
    rule(
        "felix-interface-name",
        "FelixConfiguration",
        Spec,
        "spec.wireguardInterfaceName",
        "wireguardInterfaceName must be a Linux interface name: 1-15 characters of letters, digits, '.', '_' or '-'",
        Pattern(IFACE_PATTERN),
    ),
    rule(
        "felix-vxlan-port",
        "FelixConfiguration",
        Spec,
        "spec.vxlanPort",
        "vxlanPort must be between 1 and 65535",
        Range { min: 1, max: 65535 },
    ),
    rule(
        "felix-vxlan-vni",
        "FelixConfiguration",
        Spec,
        "spec.vxlanVNI",
        "vxlanVNI must be between 1 and 16777215",
        Range {
            min: 1,
            max: 16_777_215,
        },
    ),
    rule(
        "felix-route-table-ranges",
        "FelixConfiguration",
        Spec,
        "spec.routeTableRanges",
        "each routeTableRanges entry needs 1 <= min <= max <= 4294967295 and must not include the reserved tables 253-255",
        Cel(
            "!has(self.routeTableRanges) || self.routeTableRanges.all(r, r.min >= 1 && r.min <= r.max && r.max <= 4294967295 && (r.max < 253 || r.min > 255))",
        ),
    ),
    rule(
        "felix-keepalive",
        "FelixConfiguration",
        Spec,
        "spec.wireguardKeepAlive",
        "wireguardKeepAlive must be a duration such as 25s or 0",
        Pattern(DURATION_PATTERN),
    ),
    // Calico Node
    rule(
        "node-bgp-ipv4",
        "Node",
        Spec,
        "spec.bgp.ipv4Address",
        "bgp.ipv4Address must be an IPv4 address with prefix length, e.g. 198.19.0.2/20",
        Cel(
            "!has(self.bgp) || !has(self.bgp.ipv4Address) || (isCIDR(self.bgp.ipv4Address) && cidr(self.bgp.ipv4Address).ip().family() == 4)",
        ),
    ),
    rule(
        "node-wireguard-key",
        "Node",
        Status,
        "status.wireguardPublicKey",
        "wireguardPublicKey must be a base64 WireGuard key (44 characters ending in '=')",
        Pattern(WG_KEY_PATTERN),
    ),
    // IPAMBlock / BlockAffinity
    rule(
        "ipamblock-affinity",
        "IPAMBlock",
        Spec,
        "spec.affinity",
        "affinity must be host:<node> or virtual:<name>",
        Pattern(r"^(host|virtual):[a-zA-Z0-9.\-_]+$"),
    ),
    rule(
        "ipamblock-cidr-length",
        "IPAMBlock",
        Spec,
        "spec.cidr",
        "cidr must be at most 64 characters",
        MaxLength(64),
    ),
    rule(
        "ipamblock-allocations-max",
        "IPAMBlock",
        Spec,
        "spec.allocations",
        "a block holds at most 4096 addresses (allocations has at most 4096 entries)",
        MaxItems(4096),
    ),
    rule(
        "ipamblock-cidr",
        "IPAMBlock",
        Spec,
        "spec.cidr",
        "cidr must be a network in CIDR notation with host bits zero",
        Cel("isCIDR(self.cidr) && cidr(self.cidr) == cidr(self.cidr).masked()"),
    ),
    rule(
        "ipamblock-ordinals",
        "IPAMBlock",
        Spec,
        "spec.allocations",
        "allocations must have one entry per address of the block, and a block holds at most 4096 addresses (IPv4 /20 or longer, IPv6 /116 or longer)",
        // Kubernetes CEL has no math.bitShiftLeft, so the powers of two are listed.
        Cel(
            "!isCIDR(self.cidr) || ((cidr(self.cidr).ip().family() == 4 ? 32 : 128) - cidr(self.cidr).prefixLength() <= 12 && size(self.allocations) == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096][(cidr(self.cidr).ip().family() == 4 ? 32 : 128) - cidr(self.cidr).prefixLength()])",
        ),
    ),
    // NodeNetworkState
    rule(
        "nns-name",
        "NodeNetworkState",
        Root,
        "metadata.name",
        "a NodeNetworkState must be named after its node: a lower-case RFC 1123 subdomain equal to spec.node",
        Cel(
            "self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$') && self.metadata.name == self.spec.node",
        ),
    ),
];

const DURATION_PATTERN: &str = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$";
const LOG_SEVERITY_PATTERN: &str = r"^(Debug|Info|Warning|Error|Fatal|None)$";
const IFACE_PATTERN: &str = r"^[a-zA-Z0-9._-]{1,15}$";
const WG_KEY_PATTERN: &str = r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$";

/// Looks a rule up by id.
pub fn rule_by_id(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

/// One broken rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Kind of the object.
    pub kind: &'static str,
    /// Name of the object.
    pub name: String,
    /// Full field path, e.g. `spec.cidr`.
    pub field: &'static str,
    /// Rule id.
    pub rule: &'static str,
    /// What is required.
    pub message: &'static str,
    /// The offending value, when there is one.
    pub value: Option<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:?}: {}: {}",
            self.kind, self.name, self.field, self.message
        )?;
        if let Some(v) = &self.value {
            write!(f, " (got {v:?})")?;
        }
        write!(f, " [rule {}]", self.rule)
    }
}

/// All violations of one object; empty means valid.
#[derive(Clone, Debug, Default, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<Violation>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{v}")?;
        }
        Ok(())
    }
}

impl ValidationErrors {
    /// Ok when there are no violations.
    pub fn into_result(self) -> Result<(), ValidationErrors> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
    /// The ids of the broken rules.
    pub fn rule_ids(&self) -> Vec<&'static str> {
        self.0.iter().map(|v| v.rule).collect()
    }
}

/// Collects violations for one object.
struct Checker {
    kind: &'static str,
    name: String,
    out: Vec<Violation>,
}

impl Checker {
    fn new(kind: &'static str, name: &str) -> Self {
        Checker {
            kind,
            name: name.to_string(),
            out: Vec::new(),
        }
    }

    /// A checker for a whole object that has already run the schema-enforced rules on it.
    fn for_object<K: kube::Resource + serde::Serialize>(kind: &'static str, obj: &K) -> Self {
        let mut c = Checker::new(kind, obj.meta().name.as_deref().unwrap_or(""));
        c.schema(&serde_json::to_value(obj).expect("API objects serialize to JSON"));
        c
    }

    /// Records a violation of `id` unless `ok`.
    fn check(&mut self, id: &'static str, ok: bool, value: Option<String>) {
        if ok {
            return;
        }
        let r = rule_by_id(id).unwrap_or_else(|| panic!("validation rule {id} is not in RULES"));
        debug_assert_eq!(r.kind, self.kind, "rule {id} belongs to {}", r.kind);
        self.out.push(Violation {
            kind: self.kind,
            name: self.name.clone(),
            field: r.field,
            rule: r.id,
            message: r.message,
            value,
        });
    }

    /// Checks the schema-enforced rules (ranges, patterns, lengths) of this kind on the raw JSON
    /// form, so values the typed model cannot even hold (e.g. an AS number above u32) are reported.
    fn schema(&mut self, obj: &serde_json::Value) {
        let kind = self.kind;
        for r in RULES.iter().filter(|r| r.kind == kind) {
            for v in field_values(obj, r.field)
                .into_iter()
                .filter(|v| !v.is_null())
            {
                let ok = match &r.check {
                    Range { min, max } => v.as_i64().is_some_and(|n| (*min..=*max).contains(&n)),
                    Pattern(p) => v.as_str().is_some_and(|s| pattern(p).is_match(s)),
                    MaxLength(n) => v.as_str().is_none_or(|s| s.chars().count() <= *n as usize),
                    MaxItems(n) => v.as_array().is_none_or(|a| a.len() <= *n as usize),
                    Cel(_) | RustOnly => continue,
                };
                let shown = match (v.as_str(), v.as_array()) {
                    (Some(s), _) => s.to_string(),
                    (_, Some(a)) => format!("{} items", a.len()),
                    _ => v.to_string(),
                };
                self.check(r.id, ok, Some(shown));
            }
        }
    }

    fn finish(self) -> Result<(), ValidationErrors> {
        ValidationErrors(self.out).into_result()
    }
}

/// The values at a dotted field path; a `name[]` segment steps into every item of that list.
fn field_values<'a>(obj: &'a serde_json::Value, path: &str) -> Vec<&'a serde_json::Value> {
    path.split('.')
        .fold(vec![obj], |vals, seg| match seg.strip_suffix("[]") {
            Some(list) => vals
                .into_iter()
                .filter_map(|v| v.get(list).and_then(serde_json::Value::as_array))
                .flatten()
                .collect(),
            None => vals.into_iter().filter_map(|v| v.get(seg)).collect(),
        })
}

/// Compiled schema patterns (compiled once; the table is static).
fn pattern(p: &'static str) -> &'static regex::Regex {
    static CACHE: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<&'static str, &'static regex::Regex>>,
    > = std::sync::OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    cache.entry(p).or_insert_with(|| {
        Box::leak(Box::new(
            regex::Regex::new(p).expect("rule patterns compile"),
        ))
    })
}

/// The schema-enforced rules (ranges, patterns, lengths) of `kind` checked on a raw JSON object.
pub fn schema_violations(kind: &str, name: &str, obj: &serde_json::Value) -> ValidationErrors {
    let Some(kind) = RULES.iter().find(|r| r.kind == kind).map(|r| r.kind) else {
        return ValidationErrors::default();
    };
    let mut c = Checker::new(kind, name);
    c.schema(obj);
    ValidationErrors(c.out)
}

fn name_of(meta: &kube::core::ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("")
}

/// Parses a CIDR as the API server's `isCIDR` does (host bits allowed; masked separately).
fn parse_cidr(s: &str) -> Option<IpNet> {
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
    let uses_global = |x: &Option<String>| x.as_deref().is_some_and(|x| x.contains("global()"));
    c.check(
        "ippool-selector-no-global",
        !uses_global(&s.node_selector) && !uses_global(&s.namespace_selector),
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
    let bs = |p: &api::IPPool| p.spec.block_size.unwrap_or(0);
    c.check(
        "ippool-blocksize-immutable",
        bs(old) == bs(new),
        Some(bs(new).to_string()),
    );
    errs.0.extend(c.out);
    errs.into_result()
}

fn mode_off(m: Option<api::ippool::EncapMode>) -> bool {
    m.is_none_or(|m| m == api::ippool::EncapMode::Never)
}

/// Parses BGPPeer.peerIP: an address, `v4:port` or `[v6]:port`.
pub fn parse_peer_ip(s: &str) -> Option<(IpAddr, Option<u16>)> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some((ip, None));
    }
    let sa: std::net::SocketAddr = s.parse().ok()?;
    (sa.port() != 0).then_some((sa.ip(), Some(sa.port())))
}

/// Validates a BGPPeer.
pub fn validate_bgppeer(peer: &api::BGPPeer) -> Result<(), ValidationErrors> {
    let s = &peer.spec;
    let mut c = Checker::for_object("BGPPeer", peer);
    let set = |x: &Option<String>| x.as_deref().is_some_and(|x| !x.is_empty());
    if let Some(ip) = &s.peer_ip {
        c.check(
            "bgppeer-peerip-syntax",
            parse_peer_ip(ip).is_some(),
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
            .and_then(parse_peer_ip)
            .map(|(ip, _)| ip.is_ipv4());
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
    let bad = s.communities.iter().find(|cm| !is_community(&cm.value));
    c.check(
        "bgpconfig-community-value",
        bad.is_none(),
        bad.map(|cm| cm.value.clone()),
    );
    c.finish()
}

fn is_community(v: &str) -> bool {
    let parts: Vec<&str> = v.split(':').collect();
    (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
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
    let bad = s.route_table_ranges.iter().flatten().find(|r| {
        !(r.min >= 1 && r.min <= r.max && r.max <= 4_294_967_295 && (r.max < 253 || r.min > 255))
    });
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

/// A cross-object finding: two pools whose CIDRs overlap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolOverlap {
    /// First pool (by name order).
    pub a: String,
    /// Second pool.
    pub b: String,
}

impl fmt::Display for PoolOverlap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IPPool {:?} overlaps IPPool {:?}: pool CIDRs must not overlap",
            self.a, self.b
        )
    }
}

/// Pairs of pools whose CIDRs overlap (cross-object; reported by the operator as a condition).
/// Pools with unparsable CIDRs are skipped: single-object validation reports them.
pub fn pool_overlaps(pools: &[api::IPPool]) -> Vec<PoolOverlap> {
    let mut nets: Vec<(String, IpNet)> = pools
        .iter()
        .filter_map(|p| {
            Some((
                name_of(&p.metadata).to_string(),
                parse_cidr(&p.spec.cidr)?.trunc(),
            ))
        })
        .collect();
    nets.sort_by(|x, y| x.1.cmp(&y.1).then_with(|| x.0.cmp(&y.0)));
    let mut out = Vec::new();
    // Sorted by network then prefix: a pool can only overlap later pools that start inside it.
    for i in 0..nets.len() {
        for j in i + 1..nets.len() {
            if is_v4(&nets[i].1) != is_v4(&nets[j].1) || !nets[i].1.contains(&nets[j].1.network()) {
                break;
            }
            let (a, b) = if nets[i].0 <= nets[j].0 {
                (&nets[i].0, &nets[j].0)
            } else {
                (&nets[j].0, &nets[i].0)
            };
            out.push(PoolOverlap {
                a: a.clone(),
                b: b.clone(),
            });
        }
    }
    out.sort_by(|x, y| (&x.a, &x.b).cmp(&(&y.a, &y.b)));
    out
}

fn is_v4(n: &IpNet) -> bool {
    matches!(n, IpNet::V4(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(name: &str, cidr: &str) -> api::IPPool {
        api::IPPool::new(
            name,
            api::IPPoolSpec {
                cidr: cidr.into(),
                ..Default::default()
            },
        )
    }

    #[test]
    fn pool_overlaps_reports_each_overlapping_pair_once_by_name() {
        let pools = [
            pool("default-ipv4-ippool", "198.19.16.0/21"),
            pool("external-pool", "198.19.24.0/21"),
            pool("inner", "198.19.17.0/24"),
            pool("wide", "198.19.0.0/16"),
            pool("v6", "fd00::/48"),
            pool("v6-inner", "fd00::/64"),
            pool("broken", "not-a-cidr"),
        ];
        let got: Vec<(String, String)> = pool_overlaps(&pools)
            .into_iter()
            .map(|o| (o.a, o.b))
            .collect();
        let want = [
            ("default-ipv4-ippool", "inner"),
            ("default-ipv4-ippool", "wide"),
            ("external-pool", "wide"),
            ("inner", "wide"),
            ("v6", "v6-inner"),
        ];
        assert_eq!(got, want.map(|(a, b)| (a.to_string(), b.to_string())));
        assert!(
            pool_overlaps(&pools[..2]).is_empty(),
            "the seed's two pools are disjoint"
        );
    }

    #[test]
    fn peer_ip_accepts_calico_forms_only() {
        assert_eq!(
            parse_peer_ip("198.19.15.254"),
            Some(("198.19.15.254".parse().unwrap(), None))
        );
        assert_eq!(
            parse_peer_ip("10.0.0.1:1790").map(|p| p.1),
            Some(Some(1790))
        );
        assert_eq!(parse_peer_ip("[fd00::1]:179").map(|p| p.1), Some(Some(179)));
        assert!(parse_peer_ip("fd00::1").is_some());
        for bad in ["10.0.0.1:0", "10.0.0.1:70000", "fd00::1:179x", "host1", ""] {
            assert!(parse_peer_ip(bad).is_none(), "{bad}");
        }
    }

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
}
