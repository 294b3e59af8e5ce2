//! FelixConfiguration and IPPool fields Ocelot accepts (Calico's manifests apply unchanged) but
//! does not act on: the operator reports each as `Supported=False` (reason `NotSupportedYet`) and a
//! Warning Event, as it does for BGP ([`crate::bgp::support`]).
use crate::api::FelixConfigurationSpec;
use crate::api::ippool::{EncapMode, IPPoolSpec};
use crate::bgp::support::Unsupported;

/// The set FelixConfiguration fields that have no effect.
pub fn felix_unsupported(spec: &FelixConfigurationSpec) -> Vec<Unsupported> {
    let on = |v: Option<bool>| v == Some(true);
    let mut out = Vec::new();
    if on(spec.bpf_enabled) {
        out.push(Unsupported {
            field: "spec.bpfEnabled",
            effect: "there is no eBPF dataplane; routes and nftables are used",
        });
    }
    if on(spec.wireguard_enabled_v6) {
        out.push(Unsupported {
            field: "spec.wireguardEnabledV6",
            effect: "IPv6 pod traffic is not encrypted",
        });
    }
    out
}

/// The set IPPool fields that have no effect.
pub fn pool_unsupported(spec: &IPPoolSpec) -> Vec<Unsupported> {
    let encap = |m: Option<EncapMode>| m.is_some_and(|m| m != EncapMode::Never);
    let mut out = Vec::new();
    if encap(spec.ipip_mode) {
        out.push(Unsupported {
            field: "spec.ipipMode",
            effect: "traffic to this pool's pods is not encapsulated; its blocks are routed over BGP",
        });
    }
    // vxlanMode is programmed by the agent (vxlan.calico, issue 14).
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_fields_without_effect_are_named() {
        assert!(felix_unsupported(&FelixConfigurationSpec::default()).is_empty());
        let f = FelixConfigurationSpec {
            bpf_enabled: Some(true),
            wireguard_enabled_v6: Some(false),
            ..Default::default()
        };
        let u = felix_unsupported(&f);
        assert_eq!(u.len(), 1, "{u:?}");
        assert!(
            u[0].to_string()
                .starts_with("spec.bpfEnabled is not supported yet")
        );

        let mut p = IPPoolSpec {
            cidr: "198.19.16.0/21".into(),
            ipip_mode: Some(EncapMode::Never),
            ..Default::default()
        };
        assert!(pool_unsupported(&p).is_empty());
        p.vxlan_mode = Some(EncapMode::CrossSubnet);
        assert!(pool_unsupported(&p).is_empty(), "VXLAN is programmed");
        p.vxlan_mode = None;
        p.ipip_mode = Some(EncapMode::Always);
        assert_eq!(pool_unsupported(&p)[0].field, "spec.ipipMode");
    }
}
