//! The chart's admission policy with the real API server: the agent's node-bound token may write
//! only its own node's NodeNetworkState status and IPAMBlocks, never another node's.
//!
//! The test API server has no kubelet: the agent's Pod never runs; its token is bound to it.
use ocelot_e2e::cluster::{self, check, kubectl, kubectl_stdin};
use ocelot_e2e::helm::*;
use serde_json::Value;

#[test]
fn the_agents_token_writes_only_its_own_nodes_objects() {
    let _release = Release::install("vap", &[]);
    let mut objects = Objects(Vec::new());
    for node in ["vap-node1", "vap-node2"] {
        check(
            kubectl_stdin(
                ["apply", "--server-side", "-f", "-"],
                &format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {node}\n"),
            ),
            "Node",
        );
        objects.0.push(("node", node.to_string(), None));
        check(
            kubectl_stdin(
                ["apply", "--server-side", "-f", "-"],
                &format!(
                    "apiVersion: ocelot.dev/v1alpha1\nkind: NodeNetworkState\nmetadata:\n  name: {node}\nspec: {{node: {node}}}\n"
                ),
            ),
            "NodeNetworkState",
        );
        objects
            .0
            .push(("nodenetworkstates.ocelot.dev", node.to_string(), None));
    }
    for (name, cidr, node) in [
        ("vap-198-19-40-0-26", "198.19.40.0/26", "vap-node1"),
        ("vap-198-19-40-64-26", "198.19.40.64/26", "vap-node2"),
    ] {
        check(
            kubectl_stdin(
                ["apply", "--server-side", "-f", "-"],
                &block(name, cidr, node),
            ),
            "IPAMBlock",
        );
        objects
            .0
            .push(("ipamblocks.projectcalico.org", name.to_string(), None));
    }
    // The agent's pod on node1 (never runs: no kubelet); the token is bound to it.
    check(
        kubectl_stdin(
            ["apply", "--server-side", "-f", "-"],
            &format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: vap-agent-node1\n  namespace: {NS}\nspec:\n  \
                 nodeName: vap-node1\n  serviceAccountName: vap-agent\n  containers:\n  - name: agent\n    image: ocelot-agent:test\n"
            ),
        ),
        "agent Pod",
    );
    objects
        .0
        .push(("pod", "vap-agent-node1".to_string(), Some(NS)));
    let out = kubectl([
        "create",
        "token",
        "vap-agent",
        "-n",
        NS,
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        "vap-agent-node1",
        "--duration",
        "10m",
    ]);
    assert!(out.status.success(), "create token: {}", text(&out));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();

    let dir = scratch();
    let kc = token_kubeconfig(dir.path(), &token);
    let as_agent = |args: &[&str], stdin: Option<&str>| {
        let mut cmd = std::process::Command::new(cluster::binary("kubectl").unwrap());
        cmd.arg("--kubeconfig")
            .arg(&kc)
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .args(args);
        ocelot_e2e::proc::run_output(&mut cmd, stdin.map(str::as_bytes), cluster::COMMAND_TIMEOUT)
    };

    // The API server put the bound pod's node into the token's identity.
    let who = as_agent(&["auth", "whoami", "-o", "json"], None);
    assert!(who.status.success(), "whoami: {}", text(&who));
    let who: Value = serde_json::from_slice(&who.stdout).unwrap();
    assert_eq!(
        who["status"]["userInfo"]["extra"]["authentication.kubernetes.io/node-name"],
        serde_json::json!(["vap-node1"]),
        "{who}"
    );

    // As the agent writes it: server-side apply of the status subresource (no GET first).
    let status_apply = |node: &str| {
        as_agent(
            &[
                "apply",
                "--server-side",
                "--subresource=status",
                "--field-manager=ocelot-agent",
                "-f",
                "-",
            ],
            Some(&format!(
                "apiVersion: ocelot.dev/v1alpha1\nkind: NodeNetworkState\nmetadata:\n  name: {node}\nstatus:\n  appliedHash: h1\n"
            )),
        )
    };
    let allowed = status_apply("vap-node1");
    assert!(
        allowed.status.success(),
        "own NodeNetworkState status refused: {}",
        text(&allowed)
    );

    // Its own block: a replace (the agent's update verb) keeping the affinity.
    let mut own: Value = json(&["get", "ipamblocks.projectcalico.org", "vap-198-19-40-0-26"]);
    own["spec"]["sequenceNumber"] = serde_json::json!(1);
    let r = as_agent(&["replace", "-f", "-"], Some(&own.to_string()));
    assert!(
        r.status.success(),
        "own IPAMBlock update refused: {}",
        text(&r)
    );

    let refused = |what: &str, out: std::process::Output, by_policy: bool| {
        let msg = text(&out);
        assert!(
            !out.status.success(),
            "{what} allowed for node1's agent: {msg}"
        );
        if by_policy {
            assert!(
                msg.contains("ocelot agent on node vap-node1 may only write its own node objects"),
                "{what}: not refused by the admission policy: {msg}"
            );
        } else {
            assert!(msg.contains("forbidden"), "{what}: {msg}");
        }
    };
    refused(
        "node2's NodeNetworkState status",
        status_apply("vap-node2"),
        true,
    );
    refused(
        "node1's NodeNetworkState spec",
        as_agent(
            &[
                "apply",
                "--server-side",
                "--field-manager=ocelot-agent",
                "-f",
                "-",
            ],
            Some(
                "apiVersion: ocelot.dev/v1alpha1\nkind: NodeNetworkState\nmetadata:\n  name: vap-node1\nspec:\n  node: vap-node1\n  mtu: 1400\n",
            ),
        ),
        false,
    );
    let mut other: Value = json(&["get", "ipamblocks.projectcalico.org", "vap-198-19-40-64-26"]);
    other["spec"]["sequenceNumber"] = serde_json::json!(1);
    refused(
        "node2's IPAMBlock",
        as_agent(&["replace", "-f", "-"], Some(&other.to_string())),
        true,
    );
    // Taking node2's block over (affinity to node1) is refused too: the old affinity counts.
    other["spec"]["affinity"] = serde_json::json!("host:vap-node1");
    refused(
        "node2's IPAMBlock taken over",
        as_agent(&["replace", "-f", "-"], Some(&other.to_string())),
        true,
    );
    refused(
        "an IPPool",
        as_agent(
            &["create", "-f", "-"],
            Some(
                "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: vap-pool\nspec:\n  cidr: 198.19.48.0/24\n",
            ),
        ),
        false,
    );
    refused(
        "a Secret",
        as_agent(
            &[
                "create",
                "secret",
                "generic",
                "vap-secret",
                "-n",
                NS,
                "--from-literal=a=b",
            ],
            None,
        ),
        false,
    );
}
