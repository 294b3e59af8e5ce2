//! Calico's ClusterInformation: cluster-wide facts Calico's own tools read before they act (a
//! `default` object with `datastoreReady: true` tells calicoctl and friends the datastore is
//! usable). The operator keeps the `default` object; Calico's schema, field for field.
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Cluster-wide information (Calico `projectcalico.org/v3` ClusterInformation). Only the object
/// named `default` is used.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "projectcalico.org",
    version = "v3",
    kind = "ClusterInformation",
    plural = "clusterinformations",
    printcolumn(
        name = "READY",
        type_ = "boolean",
        json_path = ".spec.datastoreReady",
        description = "Whether the datastore is ready for use"
    ),
    printcolumn(
        name = "VERSION",
        type_ = "string",
        json_path = ".spec.calicoVersion",
        description = "The Calico version this cluster is compatible with"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInformationSpec {
    /// A unique identifier of the cluster, set once.
    #[serde(
        default,
        rename = "clusterGUID",
        skip_serializing_if = "Option::is_none"
    )]
    pub cluster_guid: Option<String>,
    /// Comma-separated cluster type tags (e.g. `k8s,bgp,ocelot`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_type: Option<String>,
    /// The Calico version whose API this cluster serves (e.g. `v3.30.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calico_version: Option<String>,
    /// Whether the datastore is ready: true once the operator's caches are synced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastore_ready: Option<bool>,
    /// The product variant (Calico writes `Calico`; Ocelot writes `Ocelot`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}
