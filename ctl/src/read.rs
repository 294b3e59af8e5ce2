//! Reading the objects the commands need, with errors that say what failed and what to do.
use anyhow::{Context, Result, anyhow};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node as KubeNode, Pod};
use kube::api::{Api, ListParams};
use kube::{Client, Resource, ResourceExt};
use ocelot::api::node::Node;
use ocelot::api::{IPAMBlock, IPPool, NodeNetworkState};
use ocelot::ipam::{Ipam, LivePod};
use ocelot::report::{LeaseInfo, live_pod, load_ipam};
use serde::de::DeserializeOwned;

/// The name of the operator's leader Lease (in the namespace it runs in).
pub const OPERATOR_LEASE: &str = "ocelot-operator";

/// What went wrong reading `what`, with the likely fix.
fn explain(e: kube::Error, what: &str) -> anyhow::Error {
    let hint = match &e {
        kube::Error::Api(s) if s.code == 404 => {
            "the API server does not serve it: install Ocelot's CRDs (helm install ocelot helm/ocelot)"
        }
        kube::Error::Api(s) if s.code == 401 || s.code == 403 => {
            "your credentials may not read it: check the kubeconfig user and its RBAC"
        }
        kube::Error::Api(_) => "see the API server's message",
        _ => "is the API server reachable with this kubeconfig (--kubeconfig, --context)?",
    };
    anyhow!("reading {what}: {e}; {hint}")
}

/// Every object of a cluster-scoped (or all-namespace) kind.
pub async fn list<K>(client: &Client, what: &str) -> Result<Vec<K>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    Api::<K>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .map_err(|e| explain(e, what))
}

/// One NodeNetworkState, or None when there is none of that name.
pub async fn node_state(client: &Client, node: &str) -> Result<Option<NodeNetworkState>> {
    Api::<NodeNetworkState>::all(client.clone())
        .get_opt(node)
        .await
        .map_err(|e| explain(e, &format!("NodeNetworkState {node}")))
}

/// The IPAM engine from every IPPool and IPAMBlock; objects it cannot take are warned about.
pub async fn ipam(client: &Client) -> Result<(Ipam, Vec<IPAMBlock>)> {
    let pools: Vec<IPPool> = list(client, "IPPools (projectcalico.org/v3)").await?;
    let blocks: Vec<IPAMBlock> = list(client, "IPAMBlocks (projectcalico.org/v3)").await?;
    let (ipam, skipped) = load_ipam(&pools, &blocks);
    for s in skipped {
        eprintln!("warning: {s}");
    }
    Ok((ipam, blocks))
}

/// Every pod that holds an address.
pub async fn live_pods(client: &Client) -> Result<Vec<LivePod>> {
    let pods: Vec<Pod> = list(client, "Pods (all namespaces)").await?;
    Ok(pods.iter().filter_map(live_pod).collect())
}

/// Names of the nodes that exist: Kubernetes Nodes and Calico Nodes.
pub async fn node_names(client: &Client) -> Result<std::collections::HashSet<String>> {
    let kube: Vec<KubeNode> = list(client, "Nodes").await?;
    let calico: Vec<Node> = list(client, "Calico Nodes (nodes.projectcalico.org)").await?;
    Ok(kube
        .iter()
        .map(ResourceExt::name_any)
        .chain(calico.iter().map(ResourceExt::name_any))
        .collect())
}

/// The operator's leader Lease, in whichever namespace it runs (the most recently renewed if
/// several); None when there is none.
pub async fn operator_lease(client: &Client) -> Result<Option<LeaseInfo>> {
    let leases = Api::<Lease>::all(client.clone())
        .list(&ListParams::default().fields(&format!("metadata.name={OPERATOR_LEASE}")))
        .await
        .map_err(|e| explain(e, "the operator's Lease (coordination.k8s.io)"))
        .context("finding the operator leader")?;
    Ok(leases
        .items
        .iter()
        .map(|l| {
            let spec = l.spec.clone().unwrap_or_default();
            LeaseInfo {
                lease: format!("{}/{}", l.namespace().unwrap_or_default(), l.name_any()),
                holder: spec.holder_identity,
                renew_time: spec.renew_time.map(|t| t.0),
                duration_seconds: spec.lease_duration_seconds,
            }
        })
        .max_by_key(|l| l.renew_time))
}
