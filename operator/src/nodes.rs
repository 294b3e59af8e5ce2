//! Nodes: a Calico Node for each Kubernetes Node (address from its InternalIP, its labels), each
//! Calico Node's status (blocks, BGP listen port and AS, the checked WireGuard key), and the
//! Kubernetes Node annotations Calico's tools read. Writes only what differs.
use std::collections::BTreeMap;

use kube::api::{Api, DeleteParams, Patch, PatchParams};
use ocelot::api::{Node, NodeStatus};
use ocelot::bgp::columns::node_asn_column;
use ocelot::bgp::view::BgpView;
use ocelot::control::{internal_ipv4, node_bgp_address, published_keys};
use ocelot::overlay::vxlan_mac;

use crate::apply::FIELD_MANAGER;
use crate::ctx::{Ctx, reference};
use crate::feed::Feed;
use crate::watch::KubeNode;

/// Kubernetes Node annotations Calico publishes.
pub const ANNOTATION_IPV4: &str = "projectcalico.org/IPv4Address";
pub const ANNOTATION_WIREGUARD_KEY: &str = "projectcalico.org/WireguardPublicKey";
pub const ANNOTATION_VXLAN_ADDR: &str = "projectcalico.org/IPv4VXLANTunnelAddr";
pub const ANNOTATION_VXLAN_MAC: &str = "projectcalico.org/VXLANTunnelMACAddr";
/// Calico's default AS when BGPConfiguration `default` sets none.
const DEFAULT_AS: u32 = 64512;

/// One pass; returns the API writes made.
pub async fn reconcile(ctx: &mut Ctx, feed: &Feed) -> usize {
    let mut writes = calico_nodes(ctx, feed).await;
    let keys = keys(ctx, feed).await;
    writes += statuses(ctx, feed, &keys).await;
    writes += annotations(ctx, feed, &keys).await;
    writes
}

fn owned_by_kube_node(n: &Node) -> bool {
    n.metadata.owner_references.iter().flatten().any(|o| {
        o.kind == "Node" && o.api_version == "v1" && Some(&o.name) == n.metadata.name.as_ref()
    })
}

async fn calico_nodes(ctx: &Ctx, feed: &Feed) -> usize {
    let api: Api<Node> = Api::all(ctx.client.clone());
    let mut writes = 0;
    for (name, kn) in &feed.kube_nodes {
        let existing = feed.calico_nodes.get(name);
        let labels = kn.metadata.labels.clone().unwrap_or_default();
        let have_labels = existing
            .and_then(|n| n.metadata.labels.clone())
            .unwrap_or_default();
        let have_addr = existing
            .and_then(|n| n.spec.bgp.as_ref())
            .and_then(|b| b.ipv4_address.clone());
        let ip = internal_ipv4(kube_addresses(kn));
        let addr = have_addr
            .clone()
            .or_else(|| ip.map(|ip| node_bgp_address(ip, ctx.opts.node_prefix_length)));
        let labels_current = labels.iter().all(|(k, v)| have_labels.get(k) == Some(v));
        let owner_current = existing.is_some_and(owned_by_kube_node);
        let vxlan = vxlan_fields(feed, name, existing);
        let vxlan_current = existing.is_some_and(|n| match &vxlan {
            Some((vtep, mac)) => {
                n.spec.ipv4_vxlan_tunnel_addr.as_ref() == Some(vtep)
                    && n.spec.vxlan_tunnel_mac_addr.as_ref() == Some(mac)
            }
            // Values someone else set are theirs: only ours need removing.
            None => !applies_field(n, "f:ipv4VXLANTunnelAddr"),
        });
        if existing.is_some()
            && labels_current
            && owner_current
            && vxlan_current
            && (have_addr.is_some() || addr.is_none())
        {
            continue;
        }
        let mut body = serde_json::json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": labels,
                // Deleted with its Kubernetes Node by the garbage collector (and by this operator).
                "ownerReferences": [{
                    "apiVersion": "v1", "kind": "Node", "name": name,
                    "uid": kn.metadata.uid.clone().unwrap_or_default(),
                }],
            },
        });
        // spec is required by the schema, even for a node without an address (no BGP).
        body["spec"] = match &addr {
            Some(a) => serde_json::json!({ "bgp": { "ipv4Address": a } }),
            None => serde_json::json!({}),
        };
        // Left out when no VXLAN pool selects the node: the apply then removes our values.
        if let Some((vtep, mac)) = &vxlan {
            body["spec"]["ipv4VXLANTunnelAddr"] = vtep.clone().into();
            body["spec"]["vxlanTunnelMACAddr"] = mac.clone().into();
        }
        match api
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Apply(&body),
            )
            .await
        {
            Ok(_) => {
                tracing::info!(node = %name, address = ?addr, ?vxlan, "Calico Node applied");
                writes += 1;
            }
            Err(e) => {
                tracing::warn!(node = %name, error = %e, "Calico Node write failed; will retry")
            }
        }
    }
    for (name, n) in &feed.calico_nodes {
        if feed.kube_nodes.contains_key(name) || !owned_by_kube_node(n) {
            continue;
        }
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {
                tracing::info!(node = %name, "Calico Node deleted: its Kubernetes Node is gone");
                writes += 1;
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                tracing::warn!(node = %name, error = %e, "Calico Node delete failed; will retry")
            }
        }
    }
    writes
}

/// Whether this operator's server-side apply owns `field` (e.g. `f:ipv4VXLANTunnelAddr`).
fn applies_field(n: &Node, field: &str) -> bool {
    n.metadata.managed_fields.iter().flatten().any(|m| {
        m.manager.as_deref() == Some(FIELD_MANAGER)
            && m.operation.as_deref() == Some("Apply")
            && m.fields_v1
                .as_ref()
                .is_some_and(|f| f.0.to_string().contains(&format!("\"{field}\"")))
    })
}

/// The VXLAN tunnel address and MAC the node publishes: the address IPAM gave it and the MAC
/// already published (a node that ran Calico keeps its own), else the derived one.
fn vxlan_fields(feed: &Feed, name: &str, existing: Option<&Node>) -> Option<(String, String)> {
    let vtep = crate::blocks::vxlan_tunnel_address(feed, name)?;
    let published = existing.and_then(|n| n.spec.vxlan_tunnel_mac_addr.as_deref());
    Some((vtep.to_string(), vxlan_mac(name, published).to_string()))
}

fn kube_addresses(kn: &KubeNode) -> impl Iterator<Item = (&str, &str)> {
    kn.status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .map(|a| (a.type_.as_str(), a.address.as_str()))
}

/// The keys to publish (node → key), after the core's checks; refused keys get a Warning Event.
async fn keys(ctx: &mut Ctx, feed: &Feed) -> BTreeMap<String, String> {
    let reported: BTreeMap<String, String> = feed
        .agent_status
        .iter()
        .filter(|(node, _)| feed.calico_nodes.contains_key(*node))
        .filter(|(node, _)| feed.index.dataplane(node).wireguard_enabled)
        .filter_map(|(node, s)| Some((node.clone(), s.wireguard_public_key.clone()?)))
        .collect();
    let already: BTreeMap<String, String> = feed
        .calico_nodes
        .iter()
        .filter_map(|(n, c)| Some((n.clone(), c.status.as_ref()?.wireguard_public_key.clone()?)))
        .collect();
    let (published, refused) = published_keys(&reported, &already);
    for (node, problem) in refused {
        let key = reported.get(&node).cloned().unwrap_or_default();
        let uid = feed
            .calico_nodes
            .get(&node)
            .and_then(|n| n.metadata.uid.clone());
        let r = reference("projectcalico.org/v3", "Node", &node, uid.as_deref());
        ctx.warn_once(
            r,
            "WireGuardKeyRefused",
            &key,
            format!("{problem}; the key is not published"),
        )
        .await;
    }
    published
}

async fn statuses(ctx: &Ctx, feed: &Feed, keys: &BTreeMap<String, String>) -> usize {
    let api: Api<Node> = Api::all(ctx.client.clone());
    let cluster_as = feed
        .index
        .config("default")
        .and_then(|c| c.as_number)
        .unwrap_or(DEFAULT_AS);
    // Once per pass, over every block (Felix reads them from every IPAMBlock).
    let mut borrowed = feed.ipam.borrowed_addresses();
    let mut writes = 0;
    for (name, n) in &feed.calico_nodes {
        let mut pod_cidrs: Vec<String> = feed
            .ipam
            .node_blocks(name)
            .iter()
            .map(|b| b.to_string())
            .collect();
        pod_cidrs.sort();
        let mut borrowed_addresses: Vec<String> = borrowed
            .remove(name)
            .unwrap_or_default()
            .iter()
            .map(|a| a.to_string())
            .collect();
        borrowed_addresses.sort();
        let have = n.status.clone().unwrap_or_default();
        let want = NodeStatus {
            wireguard_public_key: keys.get(name).cloned(),
            wireguard_public_key_v6: have.wireguard_public_key_v6.clone(),
            pod_cidrs,
            borrowed_addresses,
            bgp_listen_port: n.spec.bgp.is_some().then(|| feed.index.listen_port(name)),
            as_number: node_asn_column(n, cluster_as),
        };
        if want == have {
            continue;
        }
        let mut status = serde_json::to_value(&want).unwrap_or_default();
        // Not ours: never claimed by this manager.
        if let Some(o) = status.as_object_mut() {
            o.remove("wireguardPublicKeyV6");
        }
        let body = serde_json::json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "Node",
            "metadata": { "name": name },
            "status": status,
        });
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        match api.patch_status(name, &pp, &Patch::Apply(&body)).await {
            Ok(_) => {
                tracing::info!(node = %name, key = ?want.wireguard_public_key, blocks = ?want.pod_cidrs, "Calico Node status applied");
                writes += 1;
            }
            Err(e) => {
                tracing::warn!(node = %name, error = %e, "Calico Node status write failed; will retry")
            }
        }
    }
    writes
}

async fn annotations(ctx: &Ctx, feed: &Feed, keys: &BTreeMap<String, String>) -> usize {
    let api: Api<KubeNode> = Api::all(ctx.client.clone());
    let mut writes = 0;
    for (name, kn) in &feed.kube_nodes {
        let mut want = BTreeMap::new();
        if let Some(a) = feed
            .calico_nodes
            .get(name)
            .and_then(|n| n.spec.bgp.as_ref())
            .and_then(|b| b.ipv4_address.clone())
        {
            want.insert(ANNOTATION_IPV4.to_string(), a);
        }
        if let Some(k) = keys.get(name) {
            want.insert(ANNOTATION_WIREGUARD_KEY.to_string(), k.clone());
        }
        if let Some(spec) = feed.calico_nodes.get(name).map(|n| &n.spec) {
            for (key, v) in [
                (ANNOTATION_VXLAN_ADDR, &spec.ipv4_vxlan_tunnel_addr),
                (ANNOTATION_VXLAN_MAC, &spec.vxlan_tunnel_mac_addr),
            ] {
                if let Some(v) = v {
                    want.insert(key.to_string(), v.clone());
                }
            }
        }
        let have = kn.metadata.annotations.clone().unwrap_or_default();
        let current = [
            ANNOTATION_IPV4,
            ANNOTATION_WIREGUARD_KEY,
            ANNOTATION_VXLAN_ADDR,
            ANNOTATION_VXLAN_MAC,
        ]
        .iter()
        .all(|k| have.get(*k) == want.get(*k));
        if current {
            continue;
        }
        let body = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": { "name": name, "annotations": want },
        });
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        match api.patch(name, &pp, &Patch::Apply(&body)).await {
            Ok(_) => {
                tracing::info!(node = %name, ?want, "Kubernetes Node annotations applied");
                writes += 1;
            }
            Err(e) => {
                tracing::warn!(node = %name, error = %e, "Node annotation write failed; will retry")
            }
        }
    }
    writes
}
