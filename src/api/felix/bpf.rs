//! eBPF dataplane types of FelixConfiguration.
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Connect-time load balancing in BPF mode: TCP (default, TCP services only), Enabled or Disabled.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BPFConnectTimeLBType {
    /// Only for TCP services.
    #[serde(rename = "TCP")]
    Tcp,
    /// Turned on.
    Enabled,
    /// Turned off.
    Disabled,
}

/// Service NAT for host-networked clients without connect-time load balancing: Enabled (default)
/// or Disabled.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BPFHostNetworkedNATType {
    /// Turned on.
    Enabled,
    /// Turned off.
    Disabled,
}

/// Forward straight to a pod's veth peer, bypassing the host-side ingress path: Enabled (default)
/// or Disabled; L2Only is an older spelling that acts as Enabled.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BPFRedirectToPeerMode {
    /// Turned on.
    Enabled,
    /// Turned off.
    Disabled,
    /// Deprecated; acts as Enabled.
    L2Only,
}

/// How BPF programs attach to interfaces: TCX (default, falls back to TC) or TC.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BPFAttachOption {
    /// Legacy qdisc attachment.
    #[serde(rename = "TC")]
    Tc,
    /// TCX attachment.
    #[serde(rename = "TCX")]
    Tcx,
}

/// Profiling of BPF programs: Enabled or Disabled (default).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BPFProfilingMode {
    /// Turned on.
    Enabled,
    /// Turned off.
    Disabled,
}

/// Log level of the BPF conntrack cleanup program: Off (default) or Debug.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BPFConntrackLogLevel {
    /// No logs.
    Off,
    /// Debug logs.
    Debug,
}

/// Cleanup of BPF conntrack entries: Userspace (default), BPFProgram, or Auto to prefer the BPF
/// program.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BPFConntrackMode {
    /// Decided automatically.
    Auto,
    /// Cleaned up by Felix in userspace.
    Userspace,
    /// Cleaned up by a BPF program.
    BPFProgram,
}

/// BPF JIT hardening: Auto (default) lowers a strict setting of 2 to 1; Strict leaves it alone.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BPFJITHardeningType {
    /// Decided automatically.
    Auto,
    /// Leave the kernel setting alone.
    Strict,
}

/// Source address of host traffic leaving over an IPIP/VXLAN tunnel in BPF mode: TunnelAddress
/// (default) or HostAddress.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BPFOverlayHostSourceIPType {
    /// The tunnel device's address.
    TunnelAddress,
    /// The node's own address.
    HostAddress,
}

/// BPF conntrack timers; each is a duration or Auto to use the matching Linux conntrack setting.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BPFConntrackTimeouts {
    /// Grace period before a new connection may be cleaned up. Default 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_grace_period: Option<String>,
    /// Idle time after an unanswered SYN. Default 20s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_syn_sent: Option<String>,
    /// Idle time of an established TCP connection. Default 1h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_established: Option<String>,
    /// Time after both FINs were seen. Default Auto.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_fins_seen: Option<String>,
    /// Time after a TCP reset. Default 40s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_reset_seen: Option<String>,
    /// Idle time of a UDP flow. Default 60s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_timeout: Option<String>,
    /// Idle time of other protocols. Default 10m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generic_timeout: Option<String>,
    /// Idle time of an ICMP flow. Default 5s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_timeout: Option<String>,
}
