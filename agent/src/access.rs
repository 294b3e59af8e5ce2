//! Every API call the agent makes, as RBAC sees it: (Rust type, API group, resource, verbs,
//! namespace). `e2e/tests/helm_chart.rs` derives the calls from this crate's source (each `Api<T>`
//! binding and the methods called on it, and the watches) and fails when one is missing here, and
//! checks the chart's roles grant exactly these rows. Namespace "" is cluster-wide, "release" the
//! chart's namespace. Which objects the agent may write (its own node's) is enforced by the
//! chart's admission policy.

pub const API_ACCESS: &[(&str, &str, &str, &[&str], &str)] = &[
    (
        "NodeNetworkState",
        "ocelot.dev",
        "nodenetworkstates",
        &["list", "watch"],
        "",
    ),
    (
        "NodeNetworkState",
        "ocelot.dev",
        "nodenetworkstates/status",
        &["patch"],
        "",
    ),
    (
        "IPAMBlock",
        "projectcalico.org",
        "ipamblocks",
        &["get", "list", "watch", "update"],
        "",
    ),
    (
        "IPPool",
        "projectcalico.org",
        "ippools",
        &["list", "watch"],
        "",
    ),
    ("Node", "projectcalico.org", "nodes", &["list", "watch"], ""),
    ("Namespace", "", "namespaces", &["list", "watch"], ""),
    ("Pod", "", "pods", &["get", "list", "watch"], ""),
    ("Secret", "", "secrets", &["get"], "release"),
    // kube-runtime's Recorder (a pool the node cannot carry): create, then a merge patch for a
    // repeated Event; cluster-scoped objects' Events go to namespace default.
    (
        "Recorder",
        "events.k8s.io",
        "events",
        &["create", "patch"],
        "default",
    ),
];
