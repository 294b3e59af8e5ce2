//! IPPool rules, and those of the system-owned kinds (Calico Node, IPAMBlock, NodeNetworkState).
use super::Check::{Cel, MaxItems, MaxLength, Pattern, RustOnly};
use super::Scope::{Root, Spec, Status};
use super::{Rule, WG_KEY_PATTERN, rule, transition};

// CEL guards each rule with `!isCIDR(...) ||` so one bad value yields one clear error, not a cascade.

/// IPPool rules.
pub(super) const IPPOOL: &[Rule] = &[
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
        "blockSize is immutable (an absent blockSize means 26 for IPv4, 122 for IPv6); create a new pool instead",
        "!isCIDR(self.cidr) || !isCIDR(oldSelf.cidr) || ((has(self.blockSize) && self.blockSize != 0) ? self.blockSize : (cidr(self.cidr).ip().family() == 4 ? 26 : 122)) == ((has(oldSelf.blockSize) && oldSelf.blockSize != 0) ? oldSelf.blockSize : (cidr(oldSelf.cidr).ip().family() == 4 ? 26 : 122))",
    ),
    transition(
        "ippool-loadbalancer-immutable",
        "IPPool",
        "spec.allowedUses",
        "allowedUses cannot change to or from LoadBalancer; create a new pool instead",
        "(has(self.allowedUses) && self.allowedUses.exists(u, u == 'LoadBalancer')) == (has(oldSelf.allowedUses) && oldSelf.allowedUses.exists(u, u == 'LoadBalancer'))",
    ),
];

/// Calico Node, IPAMBlock and NodeNetworkState rules.
pub(super) const SYSTEM: &[Rule] = &[
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
