//! Operator-side check of the public key an agent reports before it is distributed into the
//! Calico Node (`status.wireguardPublicKey`).
use std::collections::BTreeMap;

use super::keys::{KeyError, PublicKey};

/// Why a reported key must not be published.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    /// Not a base64 32-byte key.
    #[error("node {node:?} reported an invalid WireGuard public key: {error}")]
    Invalid {
        /// Reporting node.
        node: String,
        /// What is wrong with it.
        error: KeyError,
    },
    /// All zeros: a device without a key.
    #[error("node {node:?} reported an all-zero WireGuard public key")]
    Zero {
        /// Reporting node.
        node: String,
    },
    /// Another node already publishes the same key.
    #[error(
        "node {node:?} reported the WireGuard public key already published by {}: each node needs its own key (delete the key file on one of them and restart its agent)",
        others.iter().map(|o| format!("{o:?}")).collect::<Vec<_>>().join(", ")
    )]
    Duplicate {
        /// Reporting node.
        node: String,
        /// The other nodes publishing it, sorted.
        others: Vec<String>,
    },
}

/// Checks the key `node` reported against the keys already published (node name → key; an entry
/// for `node` itself is ignored, so re-publishing the same key is fine).
pub fn check_reported_key(
    node: &str,
    key: &str,
    all_published: &BTreeMap<String, String>,
) -> Result<(), KeyProblem> {
    let parsed = PublicKey::from_base64(key).map_err(|error| KeyProblem::Invalid {
        node: node.to_string(),
        error,
    })?;
    if parsed.is_zero() {
        return Err(KeyProblem::Zero {
            node: node.to_string(),
        });
    }
    let others: Vec<String> = all_published
        .iter()
        .filter(|(n, k)| n.as_str() != node && PublicKey::from_base64(k).ok() == Some(parsed))
        .map(|(n, _)| n.clone())
        .collect();
    if others.is_empty() {
        Ok(())
    } else {
        Err(KeyProblem::Duplicate {
            node: node.to_string(),
            others,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_KEY: &str = "Gx7A7Sf27JT3H5S11wciL6PTpGwSloipBGhjzKGTsw0=";
    const OTHER_KEY: &str = "Q+U8h6+xbx11Qbxx/qqvGAiztIL/nFoS5zG0SGeB7FY=";

    fn published(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(n, k)| (n.to_string(), k.to_string()))
            .collect()
    }

    #[test]
    fn accepts_a_fresh_key_and_a_republished_one() {
        let all = published(&[("node1", SEED_KEY), ("node2", OTHER_KEY)]);
        assert_eq!(check_reported_key("node1", SEED_KEY, &all), Ok(()));
        assert_eq!(
            check_reported_key(
                "node3",
                "w1MVwZlEEn6Yl1T/VSrTee55GWE7Iy+suBxStmJR5VQ=",
                &all
            ),
            Ok(())
        );
    }

    #[test]
    fn refuses_a_key_published_by_other_nodes_naming_them() {
        let all = published(&[
            ("control", SEED_KEY),
            ("node1", SEED_KEY),
            ("node2", OTHER_KEY),
        ]);
        let e = check_reported_key("node3", SEED_KEY, &all).unwrap_err();
        assert_eq!(
            e,
            KeyProblem::Duplicate {
                node: "node3".into(),
                others: vec!["control".into(), "node1".into()],
            }
        );
        let msg = e.to_string();
        assert!(
            msg.starts_with(r#"node "node3" reported the WireGuard public key already published by "control", "node1""#),
            "{msg}"
        );
    }

    #[test]
    fn refuses_invalid_and_zero_keys() {
        let all = BTreeMap::new();
        let e = check_reported_key("node1", "short=", &all).unwrap_err();
        assert!(matches!(e, KeyProblem::Invalid { .. }), "{e:?}");
        assert!(
            e.to_string()
                .starts_with(r#"node "node1" reported an invalid WireGuard public key: "#),
            "{e}"
        );
        let e = check_reported_key(
            "node1",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            &all,
        )
        .unwrap_err();
        assert_eq!(
            e,
            KeyProblem::Zero {
                node: "node1".into()
            }
        );
        assert_eq!(
            e.to_string(),
            r#"node "node1" reported an all-zero WireGuard public key"#
        );
    }
}
