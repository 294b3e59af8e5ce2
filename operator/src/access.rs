//! Every API call the operator makes, as RBAC sees it: (Rust type, API group, resource, verbs,
//! namespace). `e2e/tests/helm_chart.rs` derives the calls from this crate's source (each `Api<T>`
//! binding and the methods called on it, the watchers, the status writes, the Event recorder) and
//! fails when one is missing here, and checks the chart's roles grant exactly these rows.
//! Namespace "" is cluster-wide, "release" the chart's namespace, else that namespace.
#![allow(dead_code)] // read by the e2e RBAC test (included there with #[path])

pub const API_ACCESS: &[(&str, &str, &str, &[&str], &str)] = &[
    (
        "IPPool",
        "projectcalico.org",
        "ippools",
        &["list", "watch", "create"],
        "",
    ),
    (
        "IPPool",
        "projectcalico.org",
        "ippools/status",
        &["patch"],
        "",
    ),
    (
        "BGPPeer",
        "projectcalico.org",
        "bgppeers",
        &["list", "watch"],
        "",
    ),
    (
        "BGPPeer",
        "projectcalico.org",
        "bgppeers/status",
        &["patch"],
        "",
    ),
    (
        "BGPConfiguration",
        "projectcalico.org",
        "bgpconfigurations",
        &["list", "watch"],
        "",
    ),
    (
        "BGPConfiguration",
        "projectcalico.org",
        "bgpconfigurations/status",
        &["patch"],
        "",
    ),
    (
        "FelixConfiguration",
        "projectcalico.org",
        "felixconfigurations",
        &["list", "watch"],
        "",
    ),
    (
        "FelixConfiguration",
        "projectcalico.org",
        "felixconfigurations/status",
        &["patch"],
        "",
    ),
    // Server-side apply of an object that does not exist yet creates it: patch and create.
    (
        "Node",
        "projectcalico.org",
        "nodes",
        &["list", "watch", "create", "patch", "delete"],
        "",
    ),
    ("Node", "projectcalico.org", "nodes/status", &["patch"], ""),
    (
        "BlockAffinity",
        "projectcalico.org",
        "blockaffinities",
        &["list", "watch", "create", "delete"],
        "",
    ),
    (
        "IPAMBlock",
        "projectcalico.org",
        "ipamblocks",
        &["list", "watch", "create", "update", "delete"],
        "",
    ),
    (
        "ClusterInformation",
        "projectcalico.org",
        "clusterinformations",
        &["get", "create", "patch"],
        "",
    ),
    ("KubeNode", "", "nodes", &["list", "watch", "patch"], ""),
    ("Namespace", "", "namespaces", &["list", "watch"], ""),
    (
        "NodeNetworkState",
        "ocelot.dev",
        "nodenetworkstates",
        &["list", "watch", "create", "patch", "delete"],
        "",
    ),
    (
        "Lease",
        "coordination.k8s.io",
        "leases",
        &["get", "create", "update"],
        "release",
    ),
    (
        "NetworkPolicy",
        "networking.k8s.io",
        "networkpolicies",
        &["list", "watch"],
        "",
    ),
    // kube-runtime's Recorder: create, then a merge patch for a repeated Event. Events go to the
    // object's namespace (NetworkPolicies: any), cluster-scoped objects' to namespace default.
    (
        "Recorder",
        "events.k8s.io",
        "events",
        &["create", "patch"],
        "",
    ),
];
