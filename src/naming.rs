//! Names Ocelot gives to kernel objects, matching Calico's so tools and habits carry over.

/// Host-side veth name of a pod: the interface prefix (`cali`) and the first 11 hex digits of
/// SHA-1("<namespace>.<pod>"), 15 characters in all (the kernel's limit). Deterministic per pod,
/// not per container, as Calico's.
pub fn host_veth_name(prefix: &str, namespace: &str, pod: &str) -> String {
    let digest = sha1_smol::Sha1::from(format!("{namespace}.{pod}"))
        .digest()
        .to_string();
    let mut name = format!("{prefix}{digest}");
    name.truncate(15);
    name
}

/// The pod-side interface's default gateway: Calico's dummy next hop, answered by proxy ARP on the
/// host veth.
pub const POD_GATEWAY: std::net::Ipv4Addr = std::net::Ipv4Addr::new(169, 254, 1, 1);

/// MAC address of every host-side pod veth.
pub const HOST_VETH_MAC: &str = "ee:ee:ee:ee:ee:ee";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_customer_pod_gets_the_seeds_veth_name() {
        // The seed: pod customer-574bd6cc75-77tw4 in yaobank is reached via cali1e6904b30ae on node1.
        assert_eq!(
            host_veth_name("cali", "yaobank", "customer-574bd6cc75-77tw4"),
            "cali1e6904b30ae"
        );
        assert_eq!(
            host_veth_name("cali", "namespace", "podname"),
            "cali82111e10a96"
        );
        assert_eq!(host_veth_name("caliveryverylong", "a", "b").len(), 15);
    }
}
