//! Desired-state helpers shared by the operator and the agent: FelixConfiguration merging, MTU
//! rules and the NodeNetworkState content hash.

pub mod felix;
pub mod mtu;
pub mod support;

pub use felix::{DataplaneDefaults, dataplane_settings, merge_felix};
pub use mtu::{Encaps, MtuPlan, plan_mtu};

use crate::api::NodeNetworkStateSpec;

/// Content hash of a NodeNetworkState spec (its `hash` field excluded), as 16 hex digits. The agent
/// reports it back as `status.appliedHash`, so "applied" means "applied exactly this content".
/// FNV-1a over the canonical JSON: stable across processes and versions, not a security hash.
pub fn spec_hash(spec: &NodeNetworkStateSpec) -> String {
    let mut s = spec.clone();
    s.hash = String::new();
    let json = serde_json::to_vec(&s).expect("NodeNetworkStateSpec serializes");
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in json {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::nodestate::NodeBlock;

    #[test]
    fn hash_ignores_its_own_field_and_sees_every_change() {
        let mut a = NodeNetworkStateSpec {
            node: "node1".into(),
            ..Default::default()
        };
        let h0 = spec_hash(&a);
        a.hash = h0.clone();
        assert_eq!(spec_hash(&a), h0, "the hash field itself does not count");
        a.blocks.push(NodeBlock {
            pool: "default-ipv4-ippool".into(),
            cidr: "198.19.22.128/26".into(),
        });
        let h1 = spec_hash(&a);
        assert_ne!(h1, h0);
        a.dataplane.wireguard_enabled = true;
        assert_ne!(spec_hash(&a), h1);
        assert_eq!(h0.len(), 16);
    }
}
