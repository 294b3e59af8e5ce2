// kube-derive printcolumn(...) entries repeat `type_ = "string"`; clippy reads them as duplicate attributes.
#![allow(clippy::duplicated_attributes)]

//! API types: Calico's `projectcalico.org/v3` kinds with Calico's JSON field names, and Ocelot's own
//! `ocelot.dev/v1alpha1` NodeNetworkState. Every field carries a doc comment because it becomes the
//! CRD description that `kubectl explain` prints.

pub mod bgp;
pub mod clusterinfo;
pub mod felix;
pub mod ipam;
pub mod ippool;
pub mod node;
pub mod nodestate;

pub use bgp::{BGPConfiguration, BGPConfigurationSpec, BGPPeer, BGPPeerSpec};
pub use clusterinfo::{ClusterInformation, ClusterInformationSpec};
pub use felix::{FelixConfiguration, FelixConfigurationSpec};
pub use ipam::{BlockAffinity, BlockAffinitySpec, IPAMBlock, IPAMBlockSpec};
pub use ippool::{IPPool, IPPoolSpec};
pub use node::{Node, NodeSpec, NodeStatus};
pub use nodestate::{NodeNetworkState, NodeNetworkStateSpec, NodeNetworkStateStatus};

/// API group of the Calico-compatible kinds.
pub const CALICO_GROUP: &str = "projectcalico.org";
/// API group of Ocelot's own kinds.
pub const OCELOT_GROUP: &str = "ocelot.dev";

/// Standard Kubernetes condition (`metav1.Condition`), used in every status.
pub type Condition = k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
