//! BGP fields Ocelot accepts (Calico's manifests apply unchanged) but does not act on yet. The
//! operator turns each into a `status` condition (`Supported=False`, reason `NotSupportedYet`)
//! and a Warning Event, so nothing is ignored silently.
use crate::api::bgp::{BGPConfigurationSpec, BGPPeerSpec};

/// The stable reason written into conditions and Events.
pub const NOT_SUPPORTED_YET: &str = "NotSupportedYet";

/// One set field that has no effect yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsupported {
    /// Full field path, e.g. `spec.filters`.
    pub field: &'static str,
    /// What happens instead, for the condition's message.
    pub effect: &'static str,
}

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is not supported yet: {}", self.field, self.effect)
    }
}

/// The set BGPPeer fields that have no effect yet.
pub fn peer_unsupported(spec: &BGPPeerSpec) -> Vec<Unsupported> {
    let mut out = Vec::new();
    if !spec.filters.is_empty() {
        out.push(Unsupported {
            field: "spec.filters",
            effect: "BGPFilter objects are not applied; the session imports and exports as without filters",
        });
    }
    if spec.local_workload_selector.is_some() {
        out.push(Unsupported {
            field: "spec.localWorkloadSelector",
            effect: "no session with local workloads is made",
        });
    }
    out
}

/// The set BGPConfiguration fields that have no effect yet.
pub fn config_unsupported(spec: &BGPConfigurationSpec) -> Vec<Unsupported> {
    let mut out = Vec::new();
    if spec.local_workload_peering_ipv4.is_some() || spec.local_workload_peering_ipv6.is_some() {
        out.push(Unsupported {
            field: "spec.localWorkloadPeeringIPV4",
            effect: "no session with local workloads is made",
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_fields_without_effect_are_named() {
        assert!(peer_unsupported(&BGPPeerSpec::default()).is_empty());
        let p = BGPPeerSpec {
            filters: vec!["only-blocks".into()],
            ..Default::default()
        };
        let u = peer_unsupported(&p);
        assert_eq!(u.len(), 1);
        assert!(
            u[0].to_string()
                .starts_with("spec.filters is not supported yet")
        );
        let c = BGPConfigurationSpec {
            local_workload_peering_ipv4: Some("169.254.0.179".into()),
            ..Default::default()
        };
        assert_eq!(
            config_unsupported(&c)[0].field,
            "spec.localWorkloadPeeringIPV4"
        );
        assert!(config_unsupported(&BGPConfigurationSpec::default()).is_empty());
    }
}
