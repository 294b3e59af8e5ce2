//! An IP-in-IP pool on a kernel without the `ipip` module (these machines): the node's Tunnel
//! condition and a Warning Event on the pool say so, naming the pool and the node, and the node is
//! not Ready; without the pool the condition is NotNeeded again. On a kernel with the module the
//! condition says tunl0 is not programmed yet.
use ocelot_e2e::agent::{AgentLab, SEED_NODES};
use ocelot_e2e::operator::{apply, get_json};

fn conditions(node: &str) -> Result<serde_json::Value, String> {
    let v = get_json("nodenetworkstates.ocelot.dev", node)?;
    Ok(v["status"]["conditions"].clone())
}

fn find<'a>(c: &'a serde_json::Value, kind: &str) -> &'a serde_json::Value {
    c.as_array()
        .and_then(|a| a.iter().find(|x| x["type"] == kind))
        .unwrap_or(&serde_json::Value::Null)
}

#[test]
fn an_ipip_pool_without_the_kernel_module_is_reported_not_silent() {
    let mut s = AgentLab::start(&SEED_NODES[..1], &[]);
    // What this kernel can do, asked the same way (a scratch namespace of the lab).
    let scratch = s.lab.add_netns("ipip-probe").unwrap();
    let has_ipip = scratch
        .exec(["ip", "link", "add", "t0", "type", "ipip"])
        .unwrap()
        .status
        .success();
    let want = if has_ipip {
        "NotSupportedYet"
    } else {
        "KernelModuleMissing"
    };

    let nns = s.op.wait("node1's Tunnel condition NotNeeded", || {
        let c = conditions("node1")?;
        (find(&c, "Tunnel")["reason"] == "NotNeeded" && find(&c, "Ready")["status"] == "True")
            .then_some(c.clone())
            .ok_or(c.to_string())
    });
    assert_eq!(find(&nns, "Tunnel")["status"], "True");

    apply(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: ipip-pool\nspec:\n  \
         cidr: 198.19.40.0/24\n  ipipMode: Always\n  nodeSelector: '!all()'\n",
    );
    let c =
        s.op.wait("node1's Tunnel condition about the IPIP pool", || {
            let c = conditions("node1")?;
            (find(&c, "Tunnel")["reason"] == want)
                .then_some(c.clone())
                .ok_or(c.to_string())
        });
    let tunnel = find(&c, "Tunnel");
    assert_eq!(tunnel["status"], "False", "{c}");
    let msg = tunnel["message"].as_str().unwrap();
    assert!(msg.contains("IPPool ipip-pool"), "{msg}");
    if !has_ipip {
        assert!(
            msg.contains("node node1's kernel has no ipip module"),
            "{msg}"
        );
    }
    assert_eq!(find(&c, "Ready")["status"], "False", "{c}");

    ocelot_e2e::cluster::kubectl(["delete", "ippools.projectcalico.org", "ipip-pool"]);
    s.op.wait("node1's Tunnel condition NotNeeded again", || {
        let c = conditions("node1")?;
        (find(&c, "Tunnel")["reason"] == "NotNeeded" && find(&c, "Ready")["status"] == "True")
            .then_some(())
            .ok_or(c.to_string())
    });
}
