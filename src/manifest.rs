//! Validation of raw manifests (YAML or JSON documents) by kind, for `ocelotctl validate -f` and
//! tests: schema rules on the raw form first, then decoding, then the typed rules.
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api;
use crate::validation::{self, ValidationErrors};

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The document is not YAML/JSON.
    #[error("document {index}: not valid YAML: {message}")]
    Parse { index: usize, message: String },
    /// apiVersion/kind is not one Ocelot serves.
    #[error(
        "document {index}: {api_version} {kind} is not a kind Ocelot serves (projectcalico.org/v3: IPPool, BGPPeer, BGPConfiguration, FelixConfiguration, Node, IPAMBlock, BlockAffinity, ClusterInformation; ocelot.dev/v1alpha1: NodeNetworkState; v1: Namespace)"
    )]
    UnknownKind {
        index: usize,
        api_version: String,
        kind: String,
    },
    /// A field has the wrong type or an unknown value.
    #[error("{kind} {name:?}: {message}")]
    Decode {
        kind: String,
        name: String,
        message: String,
    },
    /// Rules are broken.
    #[error("{0}")]
    Invalid(ValidationErrors),
}

/// Splits a multi-document YAML stream into JSON values (empty documents skipped).
pub fn parse_documents(text: &str) -> Result<Vec<Value>, ManifestError> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for (index, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let v = Value::deserialize(doc).map_err(|e| ManifestError::Parse {
            index,
            message: e.to_string(),
        })?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

fn decode<T: DeserializeOwned>(kind: &str, name: &str, v: &Value) -> Result<T, ManifestError> {
    serde_path_to_error::deserialize(v.clone()).map_err(|e| ManifestError::Decode {
        kind: kind.to_string(),
        name: name.to_string(),
        message: format!("{}: {}", e.path(), e.inner()),
    })
}

/// Validates one document on its own (creation rules).
pub fn validate(index: usize, doc: &Value) -> Result<(), ManifestError> {
    validate_inner(index, doc, None)
}

/// Validates an update of `old` to `new`, including the immutability rules.
pub fn validate_update(index: usize, old: &Value, new: &Value) -> Result<(), ManifestError> {
    validate_inner(index, new, Some(old))
}

fn validate_inner(index: usize, doc: &Value, old: Option<&Value>) -> Result<(), ManifestError> {
    let api_version = doc["apiVersion"].as_str().unwrap_or_default();
    let kind = doc["kind"].as_str().unwrap_or_default();
    let name = doc["metadata"]["name"].as_str().unwrap_or_default();
    // Decodes the document as K (schema rules first), then runs K's typed rules.
    fn run<K: DeserializeOwned>(
        kind: &str,
        name: &str,
        doc: &Value,
        rules: fn(&K) -> Result<(), ValidationErrors>,
    ) -> Result<(), ManifestError> {
        rules(&raw_then_decode::<K>(kind, name, doc)?).map_err(ManifestError::Invalid)
    }
    fn no_rules<K>(_: &K) -> Result<(), ValidationErrors> {
        Ok(())
    }
    match (api_version, kind) {
        ("projectcalico.org/v3", "IPPool") => {
            let new = raw_then_decode::<api::IPPool>(kind, name, doc)?;
            match old {
                Some(old) => validation::validate_ippool_update(&decode(kind, name, old)?, &new),
                None => validation::validate_ippool(&new),
            }
            .map_err(ManifestError::Invalid)
        }
        ("projectcalico.org/v3", "BGPPeer") => run(kind, name, doc, validation::validate_bgppeer),
        ("projectcalico.org/v3", "BGPConfiguration") => {
            run(kind, name, doc, validation::validate_bgpconfiguration)
        }
        ("projectcalico.org/v3", "FelixConfiguration") => {
            run(kind, name, doc, validation::validate_felixconfiguration)
        }
        ("projectcalico.org/v3", "Node") => run(kind, name, doc, validation::validate_node),
        ("projectcalico.org/v3", "IPAMBlock") => {
            run(kind, name, doc, validation::validate_ipamblock)
        }
        ("projectcalico.org/v3", "BlockAffinity") => {
            run::<api::BlockAffinity>(kind, name, doc, no_rules)
        }
        ("projectcalico.org/v3", "ClusterInformation") => {
            run::<api::ClusterInformation>(kind, name, doc, no_rules)
        }
        ("ocelot.dev/v1alpha1", "NodeNetworkState") => {
            run(kind, name, doc, validation::validate_nodenetworkstate)
        }
        ("v1", "Namespace") => {
            let ns = raw_then_decode::<k8s_openapi::api::core::v1::Namespace>(kind, name, doc)?;
            let annotations = ns.metadata.annotations.unwrap_or_default();
            crate::ipam::check_annotations(
                &annotations,
                crate::ipam::PoolSource::NamespaceAnnotation,
            )
            .map_err(|e| ManifestError::Decode {
                kind: kind.into(),
                name: name.into(),
                message: e.to_string(),
            })
        }
        _ => Err(ManifestError::UnknownKind {
            index,
            api_version: api_version.into(),
            kind: kind.into(),
        }),
    }
}

/// Schema rules run on the raw document first, so values the typed model cannot hold (e.g. an AS
/// number above u32::MAX) are reported by rule rather than as a decode error.
fn raw_then_decode<T: DeserializeOwned>(
    kind: &str,
    name: &str,
    doc: &Value,
) -> Result<T, ManifestError> {
    let errs = validation::schema_violations(kind, name, doc);
    if !errs.0.is_empty() {
        return Err(ManifestError::Invalid(errs));
    }
    decode(kind, name, doc)
}
