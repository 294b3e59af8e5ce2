//! Names Ocelot gives to kernel objects, matching Calico's so tools and habits carry over.

/// The kernel's limit on interface names (IFNAMSIZ less the terminating NUL).
pub const MAX_INTERFACE_NAME: usize = 15;

/// A host veth name over the kernel's limit: the configured prefix is too long.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "host interface name {name:?} is {} characters, over the kernel's limit of {MAX_INTERFACE_NAME}: FelixConfiguration interfacePrefix {prefix:?} must be at most 4 characters [InterfaceNameTooLong]",
    name.len()
)]
pub struct NameTooLong {
    /// The name that would have been used.
    pub name: String,
    /// The prefix it started with.
    pub prefix: String,
}

/// Host-side veth name of a pod, as Calico's CNI plugin builds it: the first prefix of the
/// FelixConfiguration `interfacePrefix` comma list (`cali`) and exactly the first 11 hex digits of
/// SHA-1("<namespace>.<pod>"). Deterministic per pod, not per container. A prefix that makes the
/// name longer than the kernel allows is an error, never a silently truncated (and possibly
/// colliding) name.
pub fn host_veth_name(
    interface_prefix: &str,
    namespace: &str,
    pod: &str,
) -> Result<String, NameTooLong> {
    let prefix = interface_prefix
        .split(',')
        .map(str::trim)
        .find(|p| !p.is_empty())
        .unwrap_or("cali");
    let digest = sha1_smol::Sha1::from(format!("{namespace}.{pod}"))
        .digest()
        .to_string();
    let name = format!("{prefix}{}", &digest[..11]);
    if name.len() > MAX_INTERFACE_NAME {
        return Err(NameTooLong {
            name,
            prefix: prefix.to_string(),
        });
    }
    Ok(name)
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
            host_veth_name("cali", "yaobank", "customer-574bd6cc75-77tw4").unwrap(),
            "cali1e6904b30ae"
        );
        assert_eq!(
            host_veth_name("cali", "namespace", "podname").unwrap(),
            "cali82111e10a96"
        );
        assert_eq!(
            host_veth_name("cali,tap", "namespace", "podname").unwrap(),
            "cali82111e10a96",
            "the first prefix of the list names the veth"
        );
        assert_eq!(
            host_veth_name("tap", "namespace", "podname").unwrap(),
            "tap82111e10a96",
            "always 11 hex digits, whatever the prefix"
        );
        let e = host_veth_name("calico", "a", "b").unwrap_err();
        assert_eq!(e.name.len(), 17);
        assert!(e.to_string().contains("InterfaceNameTooLong"), "{e}");
    }
}
