//! FelixConfiguration merging: each field of `node.<name>` overrides the same field of `default`,
//! one field at a time (Calico's per-parameter resolution); unset fields fall through to the
//! built-in defaults, which are applied here in memory and never written into a user's spec.
use serde_json::Value;

use crate::api::FelixConfigurationSpec;
use crate::api::nodestate::DataplaneSettings;
use crate::values::GoDuration;

/// Merges `default` and the node's `node.<name>` object field by field (node wins).
pub fn merge_felix(
    default: Option<&FelixConfigurationSpec>,
    node: Option<&FelixConfigurationSpec>,
) -> FelixConfigurationSpec {
    // Through JSON so that every field, including ones added later, merges the same way.
    let to_map = |s: Option<&FelixConfigurationSpec>| match s.map(serde_json::to_value) {
        Some(Ok(Value::Object(m))) => m,
        _ => serde_json::Map::new(),
    };
    let mut merged = to_map(default);
    merged.extend(to_map(node));
    serde_json::from_value(Value::Object(merged))
        .expect("a merge of two valid specs is a valid spec")
}

/// Calico's built-in defaults for the dataplane fields Ocelot applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataplaneDefaults {
    /// `wireguardListeningPort`.
    pub wireguard_listening_port: i32,
    /// `wireguardInterfaceName`.
    pub wireguard_interface_name: &'static str,
    /// `wireguardRoutingRulePriority`.
    pub wireguard_routing_rule_priority: i32,
    /// `interfacePrefix`.
    pub interface_prefix: &'static str,
    /// `deviceRouteProtocol`.
    pub device_route_protocol: u8,
}

/// The values Calico uses when a field is unset everywhere.
pub const DEFAULTS: DataplaneDefaults = DataplaneDefaults {
    wireguard_listening_port: 51820,
    wireguard_interface_name: "wireguard.cali",
    wireguard_routing_rule_priority: 99,
    interface_prefix: "cali",
    device_route_protocol: crate::routes::RTPROT_BOOT,
};

/// The kernel's own routing tables (local 255, main 254, default 253): never handed out, even when
/// a `routeTableRanges` entry spans them (Felix skips them rather than refusing the range).
const KERNEL_TABLES: std::ops::RangeInclusive<i64> = 253..=255;

/// First routing table index for WireGuard: the first usable table of `routeTableRanges`
/// (default 1-250), skipping the kernel's tables.
fn wireguard_table(spec: &FelixConfigurationSpec) -> i64 {
    let ranges = spec
        .route_table_ranges
        .clone()
        .or_else(|| spec.route_table_range.map(|r| vec![r]));
    ranges
        .into_iter()
        .flatten()
        .find_map(|r| {
            let first = if KERNEL_TABLES.contains(&r.min) {
                256
            } else {
                r.min
            };
            (first <= r.max).then_some(first)
        })
        .unwrap_or(1)
}

/// The dataplane settings of one node from its merged FelixConfiguration, defaults applied.
pub fn dataplane_settings(merged: &FelixConfigurationSpec) -> DataplaneSettings {
    let d = &DEFAULTS;
    let overlay = crate::overlay::OverlaySettings::from_felix(merged);
    DataplaneSettings {
        vxlan_enabled: overlay.vxlan_enabled,
        vxlan_vni: Some(overlay.vxlan_vni),
        vxlan_port: Some(overlay.vxlan_port),
        vxlan_mtu: Some(overlay.vxlan_mtu),
        ipip_enabled: overlay.ipip_enabled,
        ipip_mtu: Some(overlay.ipip_mtu),
        program_cluster_routes: overlay.program_cluster_routes,
        wireguard_enabled: merged.wireguard_enabled.unwrap_or(false),
        wireguard_listening_port: Some(
            merged
                .wireguard_listening_port
                .unwrap_or(d.wireguard_listening_port),
        ),
        wireguard_interface_name: Some(
            merged
                .wireguard_interface_name
                .clone()
                .unwrap_or_else(|| d.wireguard_interface_name.into()),
        ),
        wireguard_mtu: Some(merged.wireguard_mtu.unwrap_or(0)),
        wireguard_routing_rule_priority: Some(
            merged
                .wireguard_routing_rule_priority
                .unwrap_or(d.wireguard_routing_rule_priority),
        ),
        wireguard_routing_table: Some(wireguard_table(merged)),
        wireguard_keep_alive_seconds: Some(
            merged
                .wireguard_keep_alive
                .as_deref()
                .and_then(|d| GoDuration::parse(d).ok())
                .map_or(0, GoDuration::truncated_seconds),
        ),
        pod_mtu: Some(0),
        interface_prefix: Some(
            merged
                .interface_prefix
                .clone()
                .unwrap_or_else(|| d.interface_prefix.into()),
        ),
        // Out-of-range values (the CRD allows any int) fall back to Felix's default.
        device_route_protocol: Some(
            merged
                .device_route_protocol
                .and_then(|p| u8::try_from(p).ok())
                .unwrap_or(d.device_route_protocol),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::felix::RouteTableRange;

    #[test]
    fn node_object_overrides_field_by_field() {
        let default = FelixConfigurationSpec {
            wireguard_enabled: Some(true),
            wireguard_listening_port: Some(51820),
            log_severity_screen: Some("Info".into()),
            ..Default::default()
        };
        let node = FelixConfigurationSpec {
            wireguard_listening_port: Some(51000),
            ..Default::default()
        };
        let m = merge_felix(Some(&default), Some(&node));
        assert_eq!(
            m.wireguard_enabled,
            Some(true),
            "unset in node falls through to default"
        );
        assert_eq!(m.wireguard_listening_port, Some(51000), "node wins");
        assert_eq!(m.log_severity_screen.as_deref(), Some("Info"));
        assert_eq!(merge_felix(None, None), FelixConfigurationSpec::default());
    }

    #[test]
    fn seed_patch_switches_wireguard_with_calico_defaults() {
        let off = dataplane_settings(&merge_felix(None, None));
        assert!(!off.wireguard_enabled);
        let on = dataplane_settings(&FelixConfigurationSpec {
            wireguard_enabled: Some(true),
            ..Default::default()
        });
        assert!(on.wireguard_enabled);
        assert_eq!(
            on.wireguard_interface_name.as_deref(),
            Some("wireguard.cali")
        );
        assert_eq!(on.wireguard_listening_port, Some(51820));
        assert_eq!(on.wireguard_routing_rule_priority, Some(99));
        assert_eq!(on.wireguard_routing_table, Some(1));
        assert_eq!(on.interface_prefix.as_deref(), Some("cali"));
        assert_eq!(on.device_route_protocol, Some(3), "Felix's default: boot");
    }

    #[test]
    fn routing_table_and_keepalive_come_from_their_fields() {
        let s = FelixConfigurationSpec {
            route_table_ranges: Some(vec![RouteTableRange { min: 10, max: 20 }]),
            wireguard_keep_alive: Some("1m30s".into()),
            ..Default::default()
        };
        let d = dataplane_settings(&s);
        assert_eq!(d.wireguard_routing_table, Some(10));
        assert_eq!(d.wireguard_keep_alive_seconds, Some(90));
        let keepalive = |v: &str| {
            dataplane_settings(&FelixConfigurationSpec {
                wireguard_keep_alive: Some(v.into()),
                ..Default::default()
            })
            .wireguard_keep_alive_seconds
        };
        assert_eq!(keepalive("1.5h"), Some(5400));
        assert_eq!(keepalive("500ms"), Some(0));
        assert_eq!(keepalive("forever"), Some(0), "unparsable: off");
    }

    #[test]
    fn routing_table_skips_the_kernel_tables() {
        let table = |min, max| {
            dataplane_settings(&FelixConfigurationSpec {
                route_table_ranges: Some(vec![RouteTableRange { min, max }]),
                ..Default::default()
            })
            .wireguard_routing_table
        };
        assert_eq!(table(253, 300), Some(256));
        assert_eq!(table(250, 300), Some(250));
        assert_eq!(
            table(253, 255),
            Some(1),
            "nothing usable: the default table 1"
        );
    }
}
