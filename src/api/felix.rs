//! FelixConfiguration: dataplane settings. `default` applies to all nodes; `node.<name>` overrides
//! individual fields for one node.
//!
//! The spec carries every field of Calico's FelixConfigurationSpec with Calico's JSON names, so
//! Calico manifests apply unchanged; the operator acts on the routing, encapsulation, WireGuard, MTU
//! and NAT fields. Enum and nested types live in submodules by area and are re-exported here.
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Condition;

pub mod bpf;
pub mod dataplane;
pub mod routing;

pub use bpf::*;
pub use dataplane::*;
pub use routing::*;

/// Dataplane settings (Calico `projectcalico.org/v3` FelixConfiguration), every Calico field.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "projectcalico.org",
    version = "v3",
    kind = "FelixConfiguration",
    plural = "felixconfigurations",
    status = "FelixConfigurationStatus",
    printcolumn(
        name = "WIREGUARD",
        type_ = "boolean",
        json_path = ".spec.wireguardEnabled",
        description = "WireGuard IPv4 encryption"
    ),
    printcolumn(
        name = "READY",
        type_ = "string",
        json_path = ".status.summary",
        description = "Node roll-up"
    ),
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct FelixConfigurationSpec {
    /// Encrypt IPv4 pod traffic between nodes with WireGuard. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_enabled: Option<bool>,
    /// Encrypt IPv6 pod traffic between nodes with WireGuard. Default false.
    #[serde(
        default,
        rename = "wireguardEnabledV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_enabled_v6: Option<bool>,
    /// UDP port of the IPv4 WireGuard device. Default 51820.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_listening_port: Option<i32>,
    /// UDP port of the IPv6 WireGuard device. Default 51821.
    #[serde(
        default,
        rename = "wireguardListeningPortV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_listening_port_v6: Option<i32>,
    /// Name of the IPv4 WireGuard device. Default wireguard.cali.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_interface_name: Option<String>,
    /// Name of the IPv6 WireGuard device. Default wg-v6.cali.
    #[serde(
        default,
        rename = "wireguardInterfaceNameV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_interface_name_v6: Option<String>,
    /// MTU of the IPv4 WireGuard device; 0 means host MTU minus 60.
    #[serde(
        default,
        rename = "wireguardMTU",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_mtu: Option<i32>,
    /// MTU of the IPv6 WireGuard device; 0 means host MTU minus 80.
    #[serde(
        default,
        rename = "wireguardMTUV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_mtu_v6: Option<i32>,
    /// Priority of the routing rule that sends pod traffic to the WireGuard table (1-32765). Default 99.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_routing_rule_priority: Option<i32>,
    /// Also encrypt host-to-host traffic. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_host_encryption_enabled: Option<bool>,
    /// WireGuard persistent keepalive, a duration such as 25s; 0 turns it off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_keep_alive: Option<String>,
    /// Threaded NAPI on the WireGuard device. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_threading_enabled: Option<bool>,
    /// Enable IP-in-IP; unset means on when any pool uses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipip_enabled: Option<bool>,
    /// MTU of the IPIP device; 0 means host MTU minus 20.
    #[serde(default, rename = "ipipMTU", skip_serializing_if = "Option::is_none")]
    pub ipip_mtu: Option<i32>,
    /// Enable VXLAN; unset means on when any pool uses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_enabled: Option<bool>,
    /// MTU of the IPv4 VXLAN device; 0 means host MTU minus 50.
    #[serde(default, rename = "vxlanMTU", skip_serializing_if = "Option::is_none")]
    pub vxlan_mtu: Option<i32>,
    /// MTU of the IPv6 VXLAN device; 0 means host MTU minus 70.
    #[serde(
        default,
        rename = "vxlanMTUV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_mtu_v6: Option<i32>,
    /// UDP port of VXLAN. Default 4789.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_port: Option<i32>,
    /// VXLAN network identifier. Default 4096.
    #[serde(default, rename = "vxlanVNI", skip_serializing_if = "Option::is_none")]
    pub vxlan_vni: Option<i32>,
    /// Regular expression of interfaces whose smallest MTU is the host MTU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu_iface_pattern: Option<String>,
    /// How often routes are re-checked, a duration. Default 90s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_refresh_interval: Option<String>,
    /// How often interfaces are re-checked, a duration. Default 90s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_refresh_interval: Option<String>,
    /// Source of pod routes: CalicoIPAM (default) or WorkloadIPs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_source: Option<RouteSource>,
    /// Routing table indices the dataplane may use. Default 1-250.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_table_ranges: Option<Vec<RouteTableRange>>,
    /// Deprecated single routing table range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_table_range: Option<RouteTableRange>,
    /// Turn off route programming. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_sync_disabled: Option<bool>,
    /// Protocol number of pod routes. Default 3 (boot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_route_protocol: Option<i32>,
    /// Source address set on IPv4 pod routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_route_source_address: Option<String>,
    /// Source address set on IPv6 pod routes.
    #[serde(
        default,
        rename = "deviceRouteSourceAddressIPv6",
        skip_serializing_if = "Option::is_none"
    )]
    pub device_route_source_address_ipv6: Option<String>,
    /// Remove routes to pod CIDRs that the dataplane did not add. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_external_routes: Option<bool>,
    /// Prefix of host-side pod interfaces. Default cali.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_prefix: Option<String>,
    /// SNAT to this address instead of masquerading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_outgoing_address: Option<String>,
    /// Port range used for masquerade, e.g. 32768:65535.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_port_range: Option<String>,
    /// IPPoolsOnly (default) or IPPoolsAndHostIPs: destinations exempt from natOutgoing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_outgoing_exclusions: Option<NatOutgoingExclusions>,
    /// Log level: Debug, Info, Warning, Error, Fatal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_screen: Option<String>,
    /// How often status is reported, a duration; 0s turns it off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporting_interval: Option<String>,
    /// Action for traffic from pods to their host: Drop (default), Accept or Return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_endpoint_to_host_action: Option<String>,
    /// Enable IPv6 support. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_support: Option<bool>,
    /// eBPF dataplane. Default false (not supported by Ocelot; kept for compatibility).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_enabled: Option<bool>,
    /// Floating IPs: Enabled or Disabled (default).
    #[serde(
        default,
        rename = "floatingIPs",
        skip_serializing_if = "Option::is_none"
    )]
    pub floating_ips: Option<String>,
    /// IP forwarding on the host: Enabled (default) or Disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_forwarding: Option<String>,
    // General and dataplane driver.
    /// Label selector that scopes a FelixConfiguration to matching nodes; Calico refuses it on default and node.<name> objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
    /// Program the dataplane in-process; false starts the external driver named by dataplaneDriver. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_internal_dataplane_driver: Option<bool>,
    /// Path of the external dataplane driver, used only when useInternalDataplaneDriver is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataplane_driver: Option<String>,
    /// Deprecated liveness/readiness timeout of the dataplane driver, a duration; use healthTimeoutOverrides instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataplane_watchdog_timeout: Option<String>,
    /// Comma-separated Name=true|false pairs that force detected kernel features on or off; an empty value means auto-detect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_detect_override: Option<String>,
    /// Comma-separated Name=value pairs that switch tech-preview features on or off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_gates: Option<String>,
    /// Timeout of netlink calls to the kernel, a duration. Default 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netlink_timeout: Option<String>,
    /// Wait for the MTU file before starting. Default false.
    #[serde(
        default,
        rename = "requireMTUFile",
        skip_serializing_if = "Option::is_none"
    )]
    pub require_mtu_file: Option<bool>,
    /// Location of the cgroup v2 hierarchy, overriding the detected one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_v2_path: Option<String>,
    /// Experimental sidecar acceleration. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar_acceleration_enabled: Option<bool>,
    /// See [`WindowsManageFirewallRulesMode`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows_manage_firewall_rules: Option<WindowsManageFirewallRulesMode>,
    /// Directory of the policy sync socket used by external policy consumers such as application-layer policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_sync_path_prefix: Option<String>,
    /// See [`IstioAmbientMode`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub istio_ambient_mode: Option<IstioAmbientMode>,
    /// DSCP value that marks traffic sent to the Istio ztunnel. Default 23.
    #[serde(
        default,
        rename = "istioDSCPMark",
        skip_serializing_if = "Option::is_none"
    )]
    pub istio_dscp_mark: Option<IntOrString>,
    // Refresh and reporting.
    /// How often iptables rules are re-checked, a duration; 0 turns it off. Default 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iptables_refresh_interval: Option<String>,
    /// How often IP sets are re-checked, a duration; 0 turns it off. Default 90s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipsets_refresh_interval: Option<String>,
    /// How often XDP state is re-checked, a duration; 0 turns it off. Default 90s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xdp_refresh_interval: Option<String>,
    /// How often nftables rules are re-checked, a duration. Default 90s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nftables_refresh_interval: Option<String>,
    /// Time-to-live of status reports, a duration. Default 90s.
    #[serde(
        default,
        rename = "reportingTTL",
        skip_serializing_if = "Option::is_none"
    )]
    pub reporting_ttl: Option<String>,
    /// Report endpoint status to the datastore (OpenStack only). Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_reporting_enabled: Option<bool>,
    /// Delay before endpoint status is reported, a duration (OpenStack only). Default 1s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_reporting_delay: Option<String>,
    /// Directory where per-endpoint status files are written; empty turns the files off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_status_path_prefix: Option<String>,
    /// Send anonymous version and cluster-size reports to projectcalico.org. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_reporting_enabled: Option<bool>,
    /// Minimum delay before the first usage report, a duration. Default 300s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_reporting_initial_delay: Option<String>,
    /// Interval between usage reports, a duration. Default 86400s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_reporting_interval: Option<String>,
    // OpenStack.
    /// Address or host name of the cloud-init metadata server; none skips the metadata NAT rule. Default 127.0.0.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_addr: Option<String>,
    /// Port of the metadata server. Default 8775.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_port: Option<i32>,
    /// OpenStack region this node belongs to, matching neutron's openstack_region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openstack_region: Option<String>,
    // Logging.
    /// Prefix of packet LOG rules; %t, %k, %n and %p expand to tier, kind, name and namespaced name. Default calico-packet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_prefix: Option<String>,
    /// Path of the log file; none turns file logging off. Default /var/log/calico/felix.log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_file_path: Option<String>,
    /// Minimum severity written to the log file: Trace, Debug, Info, Warning, Error or Fatal. Default Info.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_file: Option<String>,
    /// Minimum severity sent to syslog: Trace, Debug, Info, Warning, Error or Fatal; None turns syslog off. Default Info.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_sys: Option<String>,
    /// Regular expression of source file names whose Debug messages are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_debug_filename_regex: Option<String>,
    /// Rate limit of policy Log actions as N/unit, e.g. 10/second; units are second, minute, hour, day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_action_rate_limit: Option<String>,
    /// Burst allowed above logActionRateLimit (0-9999).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_action_rate_limit_burst: Option<i32>,
    /// Block instead of dropping log messages when the log buffer is full. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug_disable_log_dropping: Option<bool>,
    // Health, metrics and debugging.
    /// Serve the liveness and readiness endpoints. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_enabled: Option<bool>,
    /// Address the health server binds to. Default localhost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_host: Option<String>,
    /// TCP port of the health server. Default 9099.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_port: Option<i32>,
    /// Per-component overrides of the internal liveness watchdog timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_timeout_overrides: Option<Vec<HealthTimeoutOverride>>,
    /// Serve Prometheus metrics. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_metrics_enabled: Option<bool>,
    /// Address the metrics server binds to; empty means all addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_metrics_host: Option<String>,
    /// TCP port of the metrics server. Default 9091.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_metrics_port: Option<i32>,
    /// Include Go runtime metrics. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_go_metrics_enabled: Option<bool>,
    /// Include process metrics. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_process_metrics_enabled: Option<bool>,
    /// Include WireGuard metrics. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_wire_guard_metrics_enabled: Option<bool>,
    /// Absolute path of the CA certificate used to verify metrics clients over TLS.
    #[serde(
        default,
        rename = "prometheusMetricsCAFile",
        skip_serializing_if = "Option::is_none"
    )]
    pub prometheus_metrics_ca_file: Option<String>,
    /// Absolute path of the TLS certificate of the metrics endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_metrics_cert_file: Option<String>,
    /// Absolute path of the TLS private key of the metrics endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_metrics_key_file: Option<String>,
    /// TLS client authentication of the metrics endpoint: RequireAndVerifyClientCert (default), RequireAnyClientCert, VerifyClientCertIfGiven or NoClientCert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_metrics_client_auth: Option<String>,
    /// Address the debug server binds to. Default localhost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug_host: Option<String>,
    /// Port of the unauthenticated debug/profiling HTTP server; unset turns it off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug_port: Option<i32>,
    /// File a memory profile is written to when Felix is signalled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug_memory_profile_path: Option<String>,
    /// Test only: hang the calculation graph after this duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug_simulate_calc_graph_hang_after: Option<String>,
    /// Test only: hang the dataplane after this duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug_simulate_dataplane_hang_after: Option<String>,
    /// Test only: delay every dataplane update by this duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug_simulate_dataplane_apply_delay: Option<String>,
    /// Go garbage collection target percentage (GOGC); -1 turns GC off. Default 40.
    #[serde(
        default,
        rename = "goGCThreshold",
        skip_serializing_if = "Option::is_none"
    )]
    pub go_gc_threshold: Option<i32>,
    /// Soft memory limit of the Go runtime in MB (GOMEMLIMIT); -1 means none. Default -1.
    #[serde(
        default,
        rename = "goMemoryLimitMB",
        skip_serializing_if = "Option::is_none"
    )]
    pub go_memory_limit_mb: Option<i32>,
    /// Maximum CPUs the Go runtime uses (GOMAXPROCS); -1 means the system default. Default -1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub go_max_procs: Option<i32>,
    // iptables and host policy.
    /// See [`IptablesBackend`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iptables_backend: Option<IptablesBackend>,
    /// Delay after a write before iptables is read back to catch clobbering, a duration. Default 1s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iptables_post_write_check_interval: Option<String>,
    /// Interval between attempts to take the xtables lock, a duration. Default 50ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iptables_lock_probe_interval: Option<String>,
    /// Deprecated (removed in newer Calico, ignored): path of the xtables lock file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iptables_lock_file_path: Option<String>,
    /// Deprecated (removed in newer Calico, ignored): how long to wait for the xtables lock, a duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iptables_lock_timeout: Option<String>,
    /// Verdict for allowed traffic in the iptables filter table: Accept (default) or Return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iptables_filter_allow_action: Option<String>,
    /// Verdict for allowed traffic in the iptables mangle table: Accept (default) or Return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iptables_mangle_allow_action: Option<String>,
    /// Verdict for traffic denied by policy in iptables: Drop (default) or Reject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iptables_filter_deny_action: Option<String>,
    /// Packet mark bits Felix may use with iptables, a 32-bit mask. Default 0xffff0000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iptables_mark_mask: Option<u32>,
    /// Interface match (iptables syntax, + is a wildcard) limiting where natOutgoing SNAT applies.
    #[serde(
        default,
        rename = "iptablesNATOutgoingInterfaceFilter",
        skip_serializing_if = "Option::is_none"
    )]
    pub iptables_nat_outgoing_interface_filter: Option<String>,
    /// Hook the kernel's top-level chains by Insert (default) at the top or Append at the bottom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_insert_mode: Option<String>,
    /// Comma-separated interface names, or /regex/ entries, ignored as host endpoints. Default kube-ipvs0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_exclude: Option<String>,
    /// Maximum number of entries in one IP set (not used with nftables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ipset_size: Option<i32>,
    /// Skip dropping packets conntrack marks invalid. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_conntrack_invalid_check: Option<bool>,
    /// Inbound host ports always allowed regardless of policy; an empty list removes them all. Default SSH, DHCP, BGP, etcd, Typha and the Kubernetes API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failsafe_inbound_host_ports: Option<Vec<ProtoPort>>,
    /// Outbound host ports always allowed regardless of policy; an empty list removes them all. Default DNS, DHCP, BGP, etcd, Typha and the Kubernetes API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failsafe_outbound_host_ports: Option<Vec<ProtoPort>>,
    /// NodePort ranges (port or from:to) used to tell host from workload traffic when kube-proxy runs in IPVS mode. Default 30000:32767.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_node_port_ranges: Option<Vec<IntOrString>>,
    /// Handling of traffic to advertised but unused service IPs: Drop (default), Reject or Disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_loop_prevention: Option<String>,
    /// Whether pods may use the allowedSourcePrefixes annotation: Disabled (default) or Any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_source_spoofing: Option<String>,
    /// Let pods send VXLAN-encapsulated packets. Default false.
    #[serde(
        default,
        rename = "allowVXLANPacketsFromWorkloads",
        skip_serializing_if = "Option::is_none"
    )]
    pub allow_vxlan_packets_from_workloads: Option<bool>,
    /// Let pods send IP-in-IP packets. Default false.
    #[serde(
        default,
        rename = "allowIPIPPacketsFromWorkloads",
        skip_serializing_if = "Option::is_none"
    )]
    pub allow_ipip_packets_from_workloads: Option<bool>,
    /// CIDRs of non-Calico nodes whose IPIP/VXLAN traffic is accepted.
    #[serde(
        default,
        rename = "externalNodesList",
        skip_serializing_if = "Option::is_none"
    )]
    pub external_nodes_cidr_list: Option<Vec<String>>,
    // nftables.
    /// See [`NFTablesMode`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nftables_mode: Option<NFTablesMode>,
    /// Verdict for allowed traffic in the nftables filter table: Accept (default) or Return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nftables_filter_allow_action: Option<String>,
    /// Verdict for allowed traffic in the nftables mangle table: Accept (default) or Return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nftables_mangle_allow_action: Option<String>,
    /// Verdict for traffic denied by policy in nftables: Drop (default) or Reject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nftables_filter_deny_action: Option<String>,
    /// Packet mark bits Felix may use with nftables, a 32-bit mask. Default 0xffff0000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nftables_mark_mask: Option<u32>,
    // XDP.
    /// Accelerate untracked deny rules with XDP. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xdp_enabled: Option<bool>,
    /// Allow generic (driver-independent) XDP mode. Default false.
    #[serde(
        default,
        rename = "genericXDPEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub generic_xdp_enabled: Option<bool>,
    // Routing, NAT and cloud.
    /// Metric of normal IPv4 workload routes; higher means lower priority. Default 1024.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_normal_route_priority: Option<i32>,
    /// Metric of elevated IPv4 routes used during VM live migration. Default 512.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_elevated_route_priority: Option<i32>,
    /// Metric of normal IPv6 workload routes; higher means lower priority. Default 1024.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_normal_route_priority: Option<i32>,
    /// Metric of elevated IPv6 routes used during VM live migration. Default 512.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_elevated_route_priority: Option<i32>,
    /// How long routes keep elevated priority after a live migration, a duration. Default 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_migration_route_convergence_time: Option<String>,
    /// See [`ProgramClusterRoutesMode`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program_cluster_routes: Option<ProgramClusterRoutesMode>,
    /// See [`LocalSubnetL2ReachabilityMode`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_subnet_l2_reachability: Option<LocalSubnetL2ReachabilityMode>,
    /// How often proxied ARP/NDP addresses are re-announced, a duration; 0 announces once. Default 120s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_subnet_l2_reachability_refresh_interval: Option<String>,
    /// See [`AWSSrcDstCheckOption`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_src_dst_check: Option<AWSSrcDstCheckOption>,
    // Flow logs.
    /// Interval at which flow logs are exported, a duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_logs_flush_interval: Option<String>,
    /// Address of the Goldmane flow server that receives flow data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_logs_goldmane_server: Option<String>,
    /// See [`FlowLogsLocalReporterMode`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_logs_local_reporter: Option<FlowLogsLocalReporterMode>,
    /// See [`FlowLogsPolicyEvaluationModeType`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_logs_policy_evaluation_mode: Option<FlowLogsPolicyEvaluationModeType>,
    /// Log flow collector entries in full. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_logs_collector_debug_trace: Option<bool>,
    // eBPF dataplane.
    /// Set kernel.unprivileged_bpf_disabled so unprivileged users cannot use BPF. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_disable_unprivileged: Option<bool>,
    /// Log level of the BPF programs: Off (default), Info or Debug.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_log_level: Option<String>,
    /// Per-interface pcap filters for BPF debug logs; keys are interface names or all, weps, heps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_log_filters: Option<BTreeMap<String, String>>,
    /// What the connect-time load balancer logs at Debug; all is needed when bpfLogFilters is set.
    #[serde(
        default,
        rename = "bpfCTLBLogFilter",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_ctlb_log_filter: Option<String>,
    /// Regular expression of host interfaces that get BPF programs for network traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_data_iface_pattern: Option<String>,
    /// Regular expression of extra L3 (tunnel) interfaces that get BPF programs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_l3_iface_pattern: Option<String>,
    /// Deprecated switch of the connect-time load balancer; use bpfConnectTimeLoadBalancing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_connect_time_load_balancing_enabled: Option<bool>,
    /// See [`BPFConnectTimeLBType`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_connect_time_load_balancing: Option<BPFConnectTimeLBType>,
    /// See [`BPFHostNetworkedNATType`].
    #[serde(
        default,
        rename = "bpfHostNetworkedNATWithoutCTLB",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_host_networked_nat_without_ctlb: Option<BPFHostNetworkedNATType>,
    /// Forwarding of external service traffic to remote pods: Tunnel (default) or DSR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_external_service_mode: Option<String>,
    /// Client CIDRs that get Tunnel instead of DSR service handling.
    #[serde(
        default,
        rename = "bpfDSROptoutCIDRs",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_dsr_optout_cidrs: Option<Vec<String>>,
    /// 32-bit connmark set on external connections to local services. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_ext_to_service_connmark: Option<i64>,
    /// Remove kube-proxy's iptables chains in BPF mode. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_kube_proxy_iptables_cleanup_enabled: Option<bool>,
    /// Minimum time between service updates of the embedded kube-proxy, a duration. Default 1s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_kube_proxy_min_sync_period: Option<String>,
    /// Deprecated (removed in newer Calico, ignored): endpoint slices are always used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_kube_proxy_endpoint_slices_enabled: Option<bool>,
    /// Port of the embedded kube-proxy health server; 0 turns it off. Default 10256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_kube_proxy_healthz_port: Option<i32>,
    /// Source port range (from:to) picked from on a source-port collision. Default 20000:29999.
    #[serde(
        default,
        rename = "bpfPSNATPorts",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_psnat_ports: Option<IntOrString>,
    /// Entries of the NAT frontend map (one per service port, node port and external IP).
    #[serde(
        default,
        rename = "bpfMapSizeNATFrontend",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_map_size_nat_frontend: Option<i32>,
    /// Entries of the NAT backend map (one per service endpoint).
    #[serde(
        default,
        rename = "bpfMapSizeNATBackend",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_map_size_nat_backend: Option<i32>,
    /// Entries of the NAT session-affinity map.
    #[serde(
        default,
        rename = "bpfMapSizeNATAffinity",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_map_size_nat_affinity: Option<i32>,
    /// Entries of the routes map.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_map_size_route: Option<i32>,
    /// Entries of the conntrack map; resizing disrupts connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_map_size_conntrack: Option<i32>,
    /// Conntrack entries per CPU; when non-zero it overrides bpfMapSizeConntrack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_map_size_per_cpu_conntrack: Option<i32>,
    /// Growth of the conntrack map: DoubleIfFull (default) or Disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_map_size_conntrack_scaling: Option<String>,
    /// Entries of the queue of NAT conntrack entries awaiting cleanup (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_map_size_conntrack_cleanup_queue: Option<i32>,
    /// Entries of the IP sets map.
    #[serde(
        default,
        rename = "bpfMapSizeIPSets",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_map_size_ip_sets: Option<i32>,
    /// Entries of the interface state map.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_map_size_if_state: Option<i32>,
    /// Bypass Linux conntrack for workloads and services in BPF mode. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_host_conntrack_bypass: Option<bool>,
    /// Reverse-path filtering on BPF interfaces: Disabled, Strict or Loose (default).
    #[serde(
        default,
        rename = "bpfEnforceRPF",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_enforce_rpf: Option<String>,
    /// Record policy program details for the calico-bpf tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_policy_debug_enabled: Option<bool>,
    /// Interfaces whose traffic Linux conntrack still tracks in BPF mode. Default docker+.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_force_track_packets_from_ifaces: Option<Vec<String>>,
    /// Regular expression of interfaces whose generic receive offload is turned off.
    #[serde(
        default,
        rename = "bpfDisableGROForIfaces",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_disable_gro_for_ifaces: Option<String>,
    /// CIDRs left to the host instead of service NAT, e.g. a node-local DNS cache.
    #[serde(
        default,
        rename = "bpfExcludeCIDRsFromNAT",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_exclude_cidrs_from_nat: Option<Vec<String>>,
    /// Size in MB of the buffer carrying BPF events to Felix. Default 1.
    #[serde(
        default,
        rename = "bpfExportBufferSizeMB",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_export_buffer_size_mb: Option<i32>,
    /// See [`BPFRedirectToPeerMode`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_redirect_to_peer: Option<BPFRedirectToPeerMode>,
    /// See [`BPFAttachOption`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_attach_type: Option<BPFAttachOption>,
    /// See [`BPFProfilingMode`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_profiling: Option<BPFProfilingMode>,
    /// See [`BPFConntrackLogLevel`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_conntrack_log_level: Option<BPFConntrackLogLevel>,
    /// See [`BPFConntrackMode`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_conntrack_mode: Option<BPFConntrackMode>,
    /// Overrides of BPF conntrack timers; unset timers keep their defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_conntrack_timeouts: Option<BPFConntrackTimeouts>,
    /// How long fragments wait for reassembly, a duration; unset reads net.ipv4.ipfrag_time.
    #[serde(
        default,
        rename = "bpfIPFragTimeout",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_ip_frag_timeout: Option<String>,
    /// Reassemble out-of-order fragments from external networks (kernel 5.10+). Default true.
    #[serde(
        default,
        rename = "bpfIPFragmentReassemblyEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_ip_fragment_reassembly_enabled: Option<bool>,
    /// See [`BPFJITHardeningType`].
    #[serde(
        default,
        rename = "bpfJITHardening",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_jit_hardening: Option<BPFJITHardeningType>,
    /// See [`BPFOverlayHostSourceIPType`].
    #[serde(
        default,
        rename = "bpfOverlayHostSourceIP",
        skip_serializing_if = "Option::is_none"
    )]
    pub bpf_overlay_host_source_ip: Option<BPFOverlayHostSourceIPType>,
    /// Largest expected number of endpoints of one Maglev service. Default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_maglev_max_endpoints_per_service: Option<i32>,
    /// Number of Maglev services lookup tables are reserved for. Default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_maglev_max_services: Option<i32>,
}

/// Observed state of a FelixConfiguration, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FelixConfigurationStatus {
    /// The metadata.generation the operator last evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions: Ready once every affected node applied this generation, Supported (fields
    /// accepted but not acted on), and WireGuardReady while WireGuard is on for some node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Human summary, e.g. "WireGuard ready on 3/3 nodes".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Number of nodes that applied this generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes_ready: Option<u32>,
    /// Number of nodes this configuration applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes_total: Option<u32>,
    /// Nodes with WireGuard on whose agent applied the current state and reports its WireGuard
    /// condition True.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_nodes_ready: Option<u32>,
    /// Nodes with WireGuard on (after merging `default` with `node.<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_nodes_total: Option<u32>,
}
