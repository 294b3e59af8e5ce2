//! FelixConfiguration rules.
use super::Check::{Cel, Pattern, Range};
use super::Scope::{Root, Spec};
use super::{DURATION_PATTERN, IFACE_PATTERN, Rule, rule};

/// FelixConfiguration rules.
pub(super) const FELIX: &[Rule] = &[
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
        "each routeTableRanges entry needs 1 <= min <= max <= 4294967295 (the kernel's tables 253-255 inside a range are skipped)",
        Cel(
            "!has(self.routeTableRanges) || self.routeTableRanges.all(r, r.min >= 1 && r.min <= r.max && r.max <= 4294967295)",
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
];
