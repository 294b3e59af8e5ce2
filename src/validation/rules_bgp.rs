//! BGPPeer and BGPConfiguration rules.
use super::Check::{Cel, MaxItems, MaxLength, Pattern, Range, RustOnly};
use super::Scope::{Root, Spec};
use super::{DURATION_PATTERN, LOG_SEVERITY_PATTERN, Rule, rule};

/// BGPPeer and BGPConfiguration rules.
pub(super) const BGP: &[Rule] = &[
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
        "ttlSecurity must be between 0 and 255 hops (0: off)",
        Range { min: 0, max: 255 },
    ),
    rule(
        "bgppeer-max-restart-time",
        "BGPPeer",
        Spec,
        "spec.maxRestartTime",
        "maxRestartTime must be a duration such as 120s or 1.5m",
        Pattern(DURATION_PATTERN),
    ),
    rule(
        "bgppeer-keepalive-time",
        "BGPPeer",
        Spec,
        "spec.keepaliveTime",
        "keepaliveTime must be a duration such as 30s",
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
        "community values must be aa:nn with both parts 0-65535 (standard) or aa:nn:mm with all parts 0-4294967295 (large)",
        Cel(
            // Ranges as regular expressions: CEL has no portable string split.
            "!has(self.communities) || self.communities.all(c, c.value.matches('^(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}):(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})$') || c.value.matches('^(429496729[0-5]|42949672[0-8][0-9]|4294967[01][0-9]{2}|429496[0-6][0-9]{3}|42949[0-5][0-9]{4}|4294[0-8][0-9]{5}|429[0-3][0-9]{6}|42[0-8][0-9]{7}|4[01][0-9]{8}|[1-3][0-9]{9}|[0-9]{1,9}):(429496729[0-5]|42949672[0-8][0-9]|4294967[01][0-9]{2}|429496[0-6][0-9]{3}|42949[0-5][0-9]{4}|4294[0-8][0-9]{5}|429[0-3][0-9]{6}|42[0-8][0-9]{7}|4[01][0-9]{8}|[1-3][0-9]{9}|[0-9]{1,9}):(429496729[0-5]|42949672[0-8][0-9]|4294967[01][0-9]{2}|429496[0-6][0-9]{3}|42949[0-5][0-9]{4}|4294[0-8][0-9]{5}|429[0-3][0-9]{6}|42[0-8][0-9]{7}|4[01][0-9]{8}|[1-3][0-9]{9}|[0-9]{1,9})$'))",
        ),
    ),
    rule(
        "bgpconfig-prefix-advertisements-max",
        "BGPConfiguration",
        Spec,
        "spec.prefixAdvertisements",
        "prefixAdvertisements lists at most 64 entries",
        MaxItems(64),
    ),
    rule(
        "bgpconfig-prefix-communities-max",
        "BGPConfiguration",
        Spec,
        "spec.prefixAdvertisements[].communities",
        "a prefixAdvertisement lists at most 64 communities",
        MaxItems(64),
    ),
    rule(
        "bgpconfig-prefix-community-length",
        "BGPConfiguration",
        Spec,
        "spec.prefixAdvertisements[].communities[]",
        "a prefixAdvertisement community must be at most 32 characters",
        MaxLength(32),
    ),
    rule(
        "bgpconfig-communities-used",
        "BGPConfiguration",
        Spec,
        "spec.communities",
        "communities are only used through prefixAdvertisements: set prefixAdvertisements when defining communities",
        Cel(
            "!has(self.communities) || size(self.communities) == 0 || (has(self.prefixAdvertisements) && size(self.prefixAdvertisements) > 0)",
        ),
    ),
    rule(
        "bgpconfig-community-defined",
        "BGPConfiguration",
        Spec,
        "spec.prefixAdvertisements",
        "each prefixAdvertisements community must be a community value (aa:nn or aa:nn:mm) or the name of an entry in communities",
        Cel(
            "!has(self.prefixAdvertisements) || self.prefixAdvertisements.all(p, !has(p.communities) || p.communities.all(n, n.matches('^[0-9]+:[0-9]+(:[0-9]+)?$') || (has(self.communities) && self.communities.exists(c, c.name == n))))",
        ),
    ),
    rule(
        "bgpconfig-log-severity",
        "BGPConfiguration",
        Spec,
        "spec.logSeverityScreen",
        "logSeverityScreen must be one of Trace, Debug, Info, Warning, Error, Fatal, None (any case)",
        Pattern(LOG_SEVERITY_PATTERN),
    ),
];
