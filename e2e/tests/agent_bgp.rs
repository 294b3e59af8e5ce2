//! Two nodes meshed over BIRD 2 run by their agents: each node blackholes its own block and learns
//! the other's `via <node> proto bird`, pods ping across, and the NodeNetworkState status carries
//! the sessions and a BGP condition; a mesh password from a Secret reaches BIRD.
use ocelot_e2e::agent::{
    AgentLab, SEED_NODES as NODES, mesh_lines, ping_once, pod_pair, routes, wait_established,
};

#[test]
fn pods_on_two_nodes_reach_each_other_over_bgp_learned_routes() {
    let mut s = AgentLab::start(&NODES, &[]);
    let (na, nb, a, b) = pod_pair(&mut s, "mesh");
    let (a, b) = (a.as_str(), b.as_str());
    wait_bird_routes(&mut s);
    ping_once(&na, b);
    ping_once(&nb, a);

    // The node reports its sessions and a BGP condition in its NodeNetworkState status.
    let status = s.op.wait("node1's BGP status", || {
        let v = ocelot_e2e::operator::get_json("nodenetworkstates.ocelot.dev", "node1")?;
        let st = v["status"].clone();
        let bgp = st["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "BGP"))
            .cloned()
            .unwrap_or_default();
        if bgp["status"] == "True" && st["bgpPeers"].as_array().is_some_and(|p| !p.is_empty()) {
            Ok(st)
        } else {
            Err(st.to_string())
        }
    });
    let peer = &status["bgpPeers"][0];
    assert_eq!(peer["peerIP"], "198.19.0.3", "{status}");
    assert_eq!(peer["state"], "up", "{status}");
    assert_eq!(peer["info"], "Established", "{status}");
    let bgp = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "BGP")
        .unwrap();
    assert_eq!(bgp["reason"], "Established", "{status}");
    assert_eq!(bgp["message"], "1/1 sessions Established", "{status}");

    // The agent's /metrics: sessions by state, the ADD and its route, one IPAM write at least.
    let (code, metrics) = s.agent("node1").daemon.http_get("/metrics");
    assert_eq!(code, 200);
    for want in [
        "ocelot_agent_bgp_sessions{state=\"Established\"} 1",
        "ocelot_agent_cni_requests_total{verb=\"ADD\",result=\"success\"} 1",
        "ocelot_agent_routes_applied_total 1",
    ] {
        assert!(metrics.contains(want), "no {want:?} in\n{metrics}");
    }
    assert!(
        metrics.contains("ocelot_agent_ipam_writes_total"),
        "{metrics}"
    );

    // A mesh password from a Secret (BGPConfiguration nodeMeshPassword): both agents read it from
    // their namespace, BIRD gets it, the sessions come back up with TCP MD5.
    let before = mesh_lines(&wait_established(&mut s, "node1"));
    ocelot_e2e::operator::apply(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: bgp-secrets\n  namespace: kube-system\n\
         stringData:\n  mesh: lab-s3cret\n",
    );
    ocelot_e2e::operator::apply(
        "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata:\n  name: default\n\
         spec:\n  nodeMeshPassword:\n    secretKeyRef: {name: bgp-secrets, key: mesh}\n",
    );
    for node in ["node1", "node2"] {
        let conf = s.agent(node).dir.join("state/bird.conf");
        s.op.wait(
            &format!("{node}'s bird.conf with the mesh password"),
            || {
                let text = std::fs::read_to_string(&conf).map_err(|e| e.to_string())?;
                text.contains("password \"lab-s3cret\";")
                    .then_some(())
                    .ok_or(text)
            },
        );
    }
    // BIRD restarts the session for the new password after `birdc configure` returns: wait for
    // the new session (its "since" column changes) and the routes it brings back.
    s.op.wait("node1's mesh session restarted with the password", || {
        let out = s.agents["node1"].birdc_protocols()?;
        let mesh = mesh_lines(&out);
        let fresh = mesh != before && mesh.iter().all(|l| l.contains("Established"));
        fresh.then_some(()).ok_or(out)
    });
    wait_bird_routes(&mut s);
    ping_once(&na, b);
    let nns = ocelot_e2e::operator::get_json("nodenetworkstates.ocelot.dev", "node1").unwrap();
    assert!(
        !nns.to_string().contains("lab-s3cret"),
        "the password leaked into the API: {nns}"
    );
}

/// Each node: its own block blackholed by BIRD, the other's learned via that node.
fn wait_bird_routes(s: &mut AgentLab) {
    for (me, own, other_block, other_ip) in [
        ("node1", NODES[0].2, NODES[1].2, NODES[1].1),
        ("node2", NODES[1].2, NODES[0].2, NODES[0].1),
    ] {
        let node = s.lab.node(me).clone();
        let want = [
            format!("blackhole {own} proto bird"),
            format!("{other_block} via {other_ip} dev ens4 proto bird"),
        ];
        s.op.wait(&format!("{me}'s proto bird routes"), || {
            let r = routes(&node);
            let lines: Vec<&str> = r.lines().map(str::trim_end).collect();
            match want.iter().find(|w| !lines.contains(&w.as_str())) {
                None => Ok(()),
                Some(w) => Err(format!("no {w:?} in\n{r}")),
            }
        });
    }
}
