//! Dataplane, host-policy, health and flow-log types of FelixConfiguration.
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// iptables backend: Legacy, NFT, or Auto (default) to detect it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum IptablesBackend {
    /// iptables-legacy.
    Legacy,
    /// iptables-nft.
    #[serde(rename = "NFT")]
    Nft,
    /// Decided automatically.
    Auto,
}

/// Program policy with nftables instead of iptables: Enabled, Disabled, or Auto (default) to
/// follow the host.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum NFTablesMode {
    /// Turned off.
    Disabled,
    /// Turned on.
    Enabled,
    /// Decided automatically.
    Auto,
}

/// Open Windows Firewall for Felix's own metrics ports: Enabled or Disabled (default).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum WindowsManageFirewallRulesMode {
    /// Turned on.
    Enabled,
    /// Turned off.
    Disabled,
}

/// Integration with Tigera's Istio ambient mode: Enabled or Disabled (default).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum IstioAmbientMode {
    /// Turned on.
    Enabled,
    /// Turned off.
    Disabled,
}

/// Report flow data on a local unix socket: Enabled or Disabled (default).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum FlowLogsLocalReporterMode {
    /// Turned off.
    Disabled,
    /// Turned on.
    Enabled,
}

/// Re-evaluate policy traces of active flows: Continuous (default) or None.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum FlowLogsPolicyEvaluationModeType {
    /// No re-evaluation.
    None,
    /// Re-evaluate on every policy change.
    Continuous,
}

/// A failsafe port: protocol, port and optional source/destination CIDR.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct ProtoPort {
    /// tcp (default), udp or sctp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Port number.
    pub port: u16,
    /// CIDR the rule is limited to; unset means any address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<String>,
}

/// A liveness watchdog timeout for one internal component.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct HealthTimeoutOverride {
    /// Component name, as printed in Felix's logs.
    pub name: String,
    /// Timeout, a duration such as 30s.
    pub timeout: String,
}
