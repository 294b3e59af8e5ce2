//! The seed's ten steps on the live lab, in the seed's order. Each prints the command it ran and
//! what it saw, and fails with the first observation that differs from the seed.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use super::router::{ROUTER_IP, Router};
use super::wireguard::step6_wireguard;
use super::{Progress, SeedLab};
use crate::cluster::repo_root;

/// The seed's customer pod and its host interface (Calico's name for `yaobank.customer-…`).
pub const CUSTOMER_POD: &str = "customer-574bd6cc75-77tw4";
pub const CUSTOMER_VETH: &str = "cali1e6904b30ae";
pub const CUSTOMER_IP: &str = "198.19.22.129";
/// node1's block of the default pool, and the other nodes' (seed: `ip route` on node1).
pub const NODE1_BLOCK: &str = "198.19.22.128/26";
pub const CONTROL_BLOCK: &str = "198.19.21.0/26";
pub const NODE2_BLOCK: &str = "198.19.21.64/26";
pub const WIREGUARD_IP: &str = "198.19.22.131";
pub const NGINX_IP: &str = "198.19.28.208";
/// Bound for a step's convergence (routes, sessions, keys).
pub const CONVERGE: Duration = Duration::from_secs(90);

/// How many steps [`replay`] prints.
pub const STEPS: usize = 10;

fn file(rel: &str) -> PathBuf {
    repo_root().join(rel)
}

/// Lines without trailing blanks, for exact comparisons.
fn lines(text: &str) -> Vec<String> {
    text.lines().map(|l| l.trim_end().to_string()).collect()
}

/// `ip -c` colours its output; the seed's text has none.
fn strip_ansi(text: &str) -> String {
    let re = regex::Regex::new("\x1b\\[[0-9;]*m").expect("regex");
    re.replace_all(text, "").into_owned()
}

/// Whitespace-separated columns of each line.
fn columns(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

/// name -> (node, pod IP) of the pods in `ns` with label `selector`.
fn pods(lab: &SeedLab, ns: &str, selector: &str) -> Result<BTreeMap<String, (String, String)>> {
    let out = lab.kube.kubectl_ok([
        "get",
        "pods",
        "-n",
        ns,
        "-l",
        selector,
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.status.podIP}{"\n"}{end}"#,
    ])?;
    Ok(columns(&out)
        .into_iter()
        .filter(|c| c.len() == 3)
        .map(|c| (c[0].clone(), (c[1].clone(), c[2].clone())))
        .collect())
}

fn print_pods(lab: &SeedLab, ns: &str) -> Result<()> {
    let out = lab
        .kube
        .kubectl_ok(["get", "pods", "-n", ns, "-o", "wide"])?;
    println!("$ kubectl get pods -n {ns} -o wide\n{out}");
    Ok(())
}

fn apply_file(lab: &SeedLab, rel: &str) -> Result<()> {
    let path = file(rel);
    println!("$ kubectl apply -f {rel}");
    print!(
        "{}",
        lab.kube
            .kubectl_ok(["apply", "-f", &path.to_string_lossy()])?
    );
    Ok(())
}

/// Applies a multi-document manifest one document at a time, waiting after each workload until its
/// pods are Ready, so addresses are assigned in the manifest's order.
fn apply_in_order(lab: &SeedLab, rel: &str, ns: &str) -> Result<()> {
    let text = std::fs::read_to_string(file(rel)).with_context(|| format!("reading {rel}"))?;
    println!("$ kubectl apply -f {rel}   (one document at a time)");
    for doc in crate::helm::documents(&text) {
        let kind = doc["kind"].as_str().unwrap_or_default().to_string();
        let name = doc["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        print!("{}", lab.kube.apply(&serde_json::to_string(&doc)?)?);
        let app = match kind.as_str() {
            "Deployment" => doc["spec"]["selector"]["matchLabels"]["app"].as_str(),
            "Pod" => doc["metadata"]["labels"]["app"].as_str(),
            _ => None,
        };
        if let Some(app) = app {
            lab.kube
                .wait(
                    &[
                        "-n",
                        ns,
                        "pods",
                        "-l",
                        &format!("app={app}"),
                        "--for=condition=Ready",
                    ],
                    Duration::from_secs(120),
                )
                .with_context(|| format!("{kind} {name}'s pods Ready"))?;
        }
    }
    Ok(())
}

/// Runs the seed's ten steps; returns host1's BIRD, which runs while the caller keeps it.
pub fn replay(lab: &SeedLab, p: &mut Progress) -> Result<Router> {
    step1_pools(lab, p)?;
    step2_yaobank(lab, p)?;
    step3_pod_view(lab, p)?;
    step4_node_view(lab, p)?;
    step5_node_status(lab, p)?;
    step6_wireguard(lab, p)?;
    step7_external_pool(lab, p)?;
    let router = step8_peer_host1(lab, p)?;
    step9_nginx(lab, p)?;
    step10_ipam_show(lab, p)?;
    Ok(router)
}

fn step1_pools(lab: &SeedLab, p: &mut Progress) -> Result<()> {
    p.step("kubectl get ippools: the operator's default pool (seed: default-ipv4-ippool 198.19.16.0/21 all())");
    let out = lab.eventually("the default pool", CONVERGE, || {
        let out = lab.kube.kubectl_ok(["get", "ippools"])?;
        let rows = columns(&out);
        ensure!(
            rows.iter()
                .any(|r| r.len() >= 3
                    && r[..3] == ["default-ipv4-ippool", "198.19.16.0/21", "all()"]),
            "no default-ipv4-ippool 198.19.16.0/21 all() row:\n{out}"
        );
        Ok(out)
    })?;
    println!("$ kubectl get ippools\n{out}");
    Ok(())
}

fn step2_yaobank(lab: &SeedLab, p: &mut Progress) -> Result<()> {
    p.step(
        "the yaobank app (examples/seed/yaobank.yaml): the customer pod on node1 at 198.19.22.129",
    );
    apply_in_order(lab, "examples/seed/yaobank.yaml", "yaobank")?;
    print_pods(lab, "yaobank")?;
    let customer = pods(lab, "yaobank", "app=customer")?;
    ensure!(
        customer.get(CUSTOMER_POD) == Some(&("node1".to_string(), CUSTOMER_IP.to_string())),
        "customer pod: want {CUSTOMER_POD} on node1 at {CUSTOMER_IP}, got {customer:?}"
    );
    let database = pods(lab, "yaobank", "app=database")?;
    ensure!(
        database
            .values()
            .any(|(n, ip)| n == "node1" && ip == "198.19.22.128"),
        "the pod on node1 before the customer should take 198.19.22.128: {database:?}"
    );
    println!("customer {CUSTOMER_POD} on node1 at {CUSTOMER_IP}; database at 198.19.22.128 (seed)");
    Ok(())
}

fn exec_customer(lab: &SeedLab, cmd: &[&str]) -> Result<String> {
    let mut args = vec!["exec", "-n", "yaobank", CUSTOMER_POD, "--"];
    args.extend_from_slice(cmd);
    lab.kube.kubectl_ok(&args)
}

fn step3_pod_view(lab: &SeedLab, p: &mut Progress) -> Result<()> {
    p.step("kubectl exec into the customer pod: ip addr, ip route");
    let addr = exec_customer(lab, &["ip", "addr"])?;
    println!("$ kubectl exec -n yaobank {CUSTOMER_POD} -- ip addr\n{addr}");
    let eth0 = regex::Regex::new(r"(?m)^\d+: eth0@if\d+: <[^>]*UP[^>]*> mtu 1410 ")?;
    ensure!(eth0.is_match(&addr), "no `eth0@ifN: <…UP…> mtu 1410` line");
    ensure!(
        addr.contains(&format!("inet {CUSTOMER_IP}/32 ")),
        "no `inet {CUSTOMER_IP}/32` on eth0"
    );
    let route = exec_customer(lab, &["ip", "route"])?;
    println!("$ kubectl exec -n yaobank {CUSTOMER_POD} -- ip route\n{route}");
    ensure!(
        lines(&route)
            == [
                "default via 169.254.1.1 dev eth0",
                "169.254.1.1 dev eth0 scope link"
            ],
        "the pod's routes differ from the seed's two lines"
    );
    Ok(())
}

fn step4_node_view(lab: &SeedLab, p: &mut Progress) -> Result<()> {
    p.step("on node1: ip -c link show up, ip route (local pods, blackhole, proto bird)");
    let node1 = lab.kube.node("node1");
    let links = strip_ansi(&node1.exec_ok(["ip", "-c", "link", "show", "up"])?);
    println!("$ ip -c link show up   (node1)\n{links}");
    let veth = regex::Regex::new(&format!(
        r"(?m)^\d+: {CUSTOMER_VETH}@if\d+: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1410 qdisc noqueue state UP .*\n\s+link/ether ee:ee:ee:ee:ee:ee brd ff:ff:ff:ff:ff:ff link-netns cni-"
    ))?;
    ensure!(
        veth.is_match(&links),
        "no `{CUSTOMER_VETH}@ifN … mtu 1410 … link/ether ee:ee:ee:ee:ee:ee … link-netns cni-…`"
    );
    let local: BTreeMap<String, String> = [
        pods(lab, "yaobank", "app=database")?,
        pods(lab, "yaobank", "app=customer")?,
        pods(lab, "yaobank", "app=summary")?,
    ]
    .into_iter()
    .flatten()
    .filter(|(_, (n, _))| n == "node1")
    .map(|(name, (_, ip))| (ip, name))
    .collect();
    let routes = lab.eventually("node1's seed routes", CONVERGE, || {
        let routes = node1.exec_ok(["ip", "route"])?;
        let have = lines(&routes);
        for want in [
            format!("{CONTROL_BLOCK} via 198.19.0.1 dev ens4 proto bird"),
            format!("{NODE2_BLOCK} via 198.19.0.3 dev ens4 proto bird"),
            format!("blackhole {NODE1_BLOCK} proto bird"),
            format!("{CUSTOMER_IP} dev {CUSTOMER_VETH} scope link"),
        ] {
            ensure!(have.contains(&want), "no `{want}` in\n{routes}");
        }
        let pod_routes: Vec<&String> = have
            .iter()
            .filter(|l| l.contains(" dev cali") && l.ends_with("scope link"))
            .collect();
        let ips: Vec<&str> = pod_routes
            .iter()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        ensure!(
            ips == local.keys().map(String::as_str).collect::<Vec<_>>(),
            "one `/32 dev cali… scope link` per local pod: routes {ips:?}, pods {local:?}"
        );
        Ok(routes)
    })?;
    println!("$ ip route   (node1)\n{routes}");
    Ok(())
}

/// `kubectl ocelot node status node1` and `ocelotctl node status node1` (they must print the same);
/// returns the rows of the IPv4 table as (peer, type, state, info).
fn node_status(lab: &SeedLab) -> Result<(String, Vec<[String; 4]>)> {
    let plugin = lab.kubectl_ocelot(&["node", "status", "node1"])?;
    let direct = lab.ocelotctl(&["node", "status", "node1"])?;
    ensure!(
        plugin == direct,
        "kubectl ocelot and ocelotctl differ:\n{plugin}\n---\n{direct}"
    );
    let rows = plugin
        .lines()
        .filter(|l| l.starts_with("| ") && !l.contains("PEER ADDRESS"))
        .map(|l| {
            let c: Vec<String> = l.split('|').map(|c| c.trim().to_string()).collect();
            [c[1].clone(), c[2].clone(), c[3].clone(), c[5].clone()]
        })
        .collect();
    Ok((plugin, rows))
}

fn expect_peers(rows: &[[String; 4]], want: &[(&str, &str)]) -> Result<()> {
    let have: Vec<(&str, &str, &str, &str)> = rows
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str(), r[2].as_str(), r[3].as_str()))
        .collect();
    let want: Vec<(&str, &str, &str, &str)> = want
        .iter()
        .map(|(ip, t)| (*ip, *t, "up", "Established"))
        .collect();
    ensure!(have == want, "BGP rows {have:?}, want {want:?}");
    Ok(())
}

fn step5_node_status(lab: &SeedLab, p: &mut Progress) -> Result<()> {
    p.step("kubectl ocelot node status node1 (calicoctl node status in the seed)");
    let (out, _) = lab.eventually("node1's two mesh sessions Established", CONVERGE, || {
        let (out, rows) = node_status(lab)?;
        expect_peers(
            &rows,
            &[
                ("198.19.0.1", "node-to-node mesh"),
                ("198.19.0.3", "node-to-node mesh"),
            ],
        )?;
        Ok((out, rows))
    })?;
    println!("$ kubectl ocelot node status node1\n{out}");
    ensure!(
        out.contains("IPv4 BGP status") && out.contains("No IPv6 peers found."),
        "node status lacks the seed's headings"
    );
    Ok(())
}

fn step7_external_pool(lab: &SeedLab, p: &mut Progress) -> Result<()> {
    p.step("external-pool (the seed's YAML): kubectl get ippools");
    apply_file(lab, "tests/fixtures/valid/ippool-external.yaml")?;
    let out = lab.kube.kubectl_ok(["get", "ippools"])?;
    println!("$ kubectl get ippools\n{out}");
    let rows: Vec<Vec<String>> = columns(&out)
        .into_iter()
        .skip(1)
        .map(|r| r.into_iter().take(3).collect())
        .collect();
    ensure!(
        rows == [
            ["default-ipv4-ippool", "198.19.16.0/21", "all()"],
            ["external-pool", "198.19.24.0/21", "!all()"]
        ],
        "kubectl get ippools rows {rows:?}"
    );
    Ok(())
}

fn step8_peer_host1(lab: &SeedLab, p: &mut Progress) -> Result<Router> {
    p.step("BGPPeer bgppeer-global-host1: host1 (BIRD, AS 64512) as the router");
    let host1 = lab.kube.lab().node("host1");
    let nodes: Vec<(String, String)> = lab
        .kube
        .nodes()
        .iter()
        .map(|n| (n.name().to_string(), n.ip().to_string()))
        .collect();
    let router = Router::start(host1, &nodes, &lab.kube.dir().join("host1-bird"))?;
    apply_file(lab, "tests/fixtures/valid/bgppeer-global-host1.yaml")?;
    let (out, _) = lab.eventually("node1's session with host1 Established", CONVERGE, || {
        let (out, rows) = node_status(lab)?;
        expect_peers(
            &rows,
            &[
                ("198.19.0.1", "node-to-node mesh"),
                ("198.19.0.3", "node-to-node mesh"),
                (ROUTER_IP, "global"),
            ],
        )?;
        Ok((out, rows))
    })?;
    println!("$ kubectl ocelot node status node1\n{out}");
    let routes = lab.eventually("host1 learns the cluster's blocks", CONVERGE, || {
        let routes = host1.exec_ok(["ip", "route"])?;
        for (block, via) in [
            (CONTROL_BLOCK, "198.19.0.1"),
            (NODE1_BLOCK, "198.19.0.2"),
            (NODE2_BLOCK, "198.19.0.3"),
        ] {
            let want = format!("{block} via {via} dev ens4 proto bird");
            ensure!(
                lines(&routes).contains(&want),
                "no `{want}` on host1; its BIRD has:\n{}",
                router
                    .birdc(host1, &["show", "route", "all"])
                    .unwrap_or_else(|e| format!("{e:#}"))
            );
        }
        Ok(routes)
    })?;
    println!("$ ip route   (host1)\n{routes}");
    Ok(router)
}

fn step9_nginx(lab: &SeedLab, p: &mut Progress) -> Result<()> {
    p.step("namespace external-ns (pool annotation) and the seed's nginx: 198.19.28.208, curl from host1");
    apply_file(lab, "tests/fixtures/valid/namespace-external-ns.yaml")?;
    apply_file(lab, "examples/seed/nginx.yaml")?;
    lab.kube.wait(
        &[
            "-n",
            "external-ns",
            "deployment/nginx",
            "--for=condition=Available",
        ],
        Duration::from_secs(120),
    )?;
    print_pods(lab, "external-ns")?;
    let nginx = pods(lab, "external-ns", "app=nginx")?;
    ensure!(
        nginx.values().any(|(_, ip)| ip == NGINX_IP),
        "nginx's address: want {NGINX_IP}, got {nginx:?}"
    );
    println!(
        "$ kubectl get networkpolicy -n external-ns\n{}",
        lab.kube
            .kubectl_ok(["get", "networkpolicy", "-n", "external-ns"])?
    );
    // The operator says on the policy itself that it is not enforced (a Warning Event).
    let note = lab.eventually(
        "the NotEnforced Event on NetworkPolicy nginx",
        CONVERGE,
        || {
            let out = lab.kube.kubectl_ok([
                "get",
                "events",
                "-n",
                "external-ns",
                "--field-selector",
                "reason=NotEnforced,involvedObject.kind=NetworkPolicy,involvedObject.name=nginx",
                "-o",
                "jsonpath={range .items[*]}{.type} {.reason} {.message}{\"\\n\"}{end}",
            ])?;
            ensure!(
                out.starts_with("Warning NotEnforced "),
                "no Event yet ({out:?})"
            );
            Ok(out)
        },
    )?;
    println!("$ kubectl get events -n external-ns --field-selector reason=NotEnforced\n{note}");
    let host1 = lab.kube.lab().node("host1");
    let page = lab.eventually("curl 198.19.28.208 from host1", CONVERGE, || {
        let out = host1.exec_ok([
            "curl",
            "-sS",
            "--max-time",
            "5",
            &format!("http://{NGINX_IP}/"),
        ])?;
        ensure!(out.contains("Welcome to nginx"), "not nginx's page: {out}");
        Ok(out)
    })?;
    println!("$ curl {NGINX_IP}   (host1)\n{page}");
    Ok(())
}

/// The pool and block rows of `ipam show --show-blocks`: (grouping, cidr) -> in use.
fn ipam_rows(table: &str) -> BTreeMap<(String, String), u64> {
    table
        .lines()
        .filter(|l| l.starts_with("| IP Pool") || l.starts_with("| Block"))
        .filter_map(|l| {
            let c: Vec<&str> = l.split('|').map(str::trim).collect();
            let used = c.get(4)?.split_whitespace().next()?.parse().ok()?;
            Some(((c[1].to_string(), c[2].to_string()), used))
        })
        .collect()
}

fn step10_ipam_show(lab: &SeedLab, p: &mut Progress) -> Result<()> {
    p.step(
        "kubectl ocelot ipam show --show-blocks: both pools and their blocks; ipam check; status",
    );
    // What the cluster holds: each block's allocations, from the IPAMBlocks themselves.
    let blocks: Value = serde_json::from_str(&lab.kube.kubectl_ok([
        "get",
        "ipamblocks.projectcalico.org",
        "-o",
        "json",
    ])?)?;
    let mut want = BTreeMap::new();
    for b in blocks["items"].as_array().into_iter().flatten() {
        let cidr = b["spec"]["cidr"].as_str().unwrap_or_default().to_string();
        let used = b["spec"]["allocations"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|x| !x.is_null()).count() as u64);
        want.insert(("Block".to_string(), cidr), used);
    }
    let node1_used = want.get(&("Block".into(), NODE1_BLOCK.into())).copied();
    // node1: database, customer, summary (WireGuard's address was released when it went off).
    ensure!(
        node1_used == Some(3),
        "node1's block {NODE1_BLOCK}: {node1_used:?} in use, want 3"
    );
    let out = lab.kubectl_ocelot(&["ipam", "show", "--show-blocks"])?;
    println!("$ kubectl ocelot ipam show --show-blocks\n{out}");
    let rows = ipam_rows(&out);
    for (key, used) in &want {
        ensure!(
            rows.get(key) == Some(used),
            "{} {}: ipam show says {:?} in use, the IPAMBlock {used}",
            key.0,
            key.1,
            rows.get(key)
        );
    }
    let pool_used = |cidr: &str| {
        rows.get(&("IP Pool".to_string(), cidr.to_string()))
            .copied()
    };
    let in_pool = |pool: &str| -> u64 {
        let pool: ipnet::Ipv4Net = pool.parse().expect("pool CIDR");
        want.iter()
            .filter(|((_, c), _)| c.parse::<ipnet::Ipv4Net>().is_ok_and(|b| pool.contains(&b)))
            .map(|(_, u)| u)
            .sum()
    };
    let default_blocks = in_pool("198.19.16.0/21");
    ensure!(
        pool_used("198.19.16.0/21") == Some(default_blocks),
        "default pool in use {:?}, its blocks hold {default_blocks}",
        pool_used("198.19.16.0/21")
    );
    ensure!(
        pool_used("198.19.24.0/21") == Some(1) && in_pool("198.19.24.0/21") == 1,
        "external-pool in use {:?}, want 1 (nginx)",
        pool_used("198.19.24.0/21")
    );
    if rows.len() != want.len() + 2 {
        bail!(
            "ipam show has {} rows, want 2 pools + {} blocks",
            rows.len(),
            want.len()
        );
    }
    Ok(())
}
