//! `ocelot-lab`: replays the seed lab (`../shared/seed/000_315f55d3b5a24ff5.txt`) on this machine with
//! what Ocelot implements so far, step by step, and says plainly which steps are still to come.
//!
//! Run it through `scripts/lab.sh` (installs the test cluster binaries, BIRD and friends first).
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use ocelot::ipam::{AssignRequest, Family, Ipam, IpamConfig, PodContext};
use ocelot_e2e::cluster::{TestCluster, check, repo_root};
use ocelot_e2e::kubelab::{KubeLab, NGINX_IMAGE};

/// The seed's "Deploy an NGINX pod" step, with the lab's local nginx image.
const NGINX: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: nginx, namespace: external-ns}
spec:
  replicas: 1
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - {name: nginx, image: IMAGE, imagePullPolicy: Never, ports: [{containerPort: 80}]}
"#;

struct Steps {
    start: Instant,
    n: usize,
    total: usize,
}

impl Steps {
    fn step(&mut self, what: &str) {
        self.n += 1;
        println!(
            "\n[{}/{}] {what} (elapsed {:.1}s)",
            self.n,
            self.total,
            self.start.elapsed().as_secs_f64()
        );
    }
}

fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures/valid").join(name)
}

fn main() {
    let keep = std::env::args().any(|a| a == "--keep");
    match run(keep) {
        Ok(()) => println!(
            "\nRESULT: seed lab steps passed (API, validation, IPAM decisions, node fabric)."
        ),
        Err(e) => {
            eprintln!("\nRESULT: FAILED: {e:#}");
            eprintln!(
                "Logs of the test cluster and lab are named above; rerun `scripts/lab.sh` after fixing the cause."
            );
            std::process::exit(1);
        }
    }
}

fn run(keep: bool) -> Result<()> {
    let mut s = Steps {
        start: Instant::now(),
        n: 0,
        total: 6,
    };

    s.step("start a Kubernetes API (etcd + kube-apiserver built from their Go modules) and install crds/");
    let cluster = TestCluster::from_env_or_start().context("starting the test cluster")?;
    if !cluster.crd_errors().is_empty() {
        bail!(
            "CRDs refused by the API server:\n{}",
            cluster.crd_errors().join("\n")
        );
    }
    println!("kubeconfig: {}", cluster.kubeconfig_path().display());
    let kubectl = |args: &[&str]| {
        check(
            cluster.kubectl(args),
            &format!("kubectl {}", args.join(" ")),
        )
    };

    s.step(
        "apply the seed's IP pools, BGP peer and namespace with kubectl (calicoctl in the seed)",
    );
    for f in [
        "ippool-default.yaml",
        "ippool-external.yaml",
        "bgppeer-global-host1.yaml",
        "namespace-external-ns.yaml",
    ] {
        let path = fixture(f);
        print!(
            "{}",
            kubectl(&["apply", "-f", path.to_str().context("utf-8 path")?])
        );
    }
    println!("$ kubectl get ippools\n{}", kubectl(&["get", "ippools"]));
    println!("$ kubectl get bgppeers\n{}", kubectl(&["get", "bgppeers"]));

    s.step("switch WireGuard on and off with the seed's merge patch");
    print!(
        "{}",
        kubectl(&[
            "apply",
            "-f",
            fixture("felixconfiguration-default.yaml")
                .to_str()
                .context("path")?
        ])
    );
    for on in [true, false] {
        let patch = format!(r#"{{"spec":{{"wireguardEnabled":{on}}}}}"#);
        print!(
            "$ kubectl patch felixconfiguration default --type=merge -p '{patch}'\n{}",
            kubectl(&[
                "patch",
                "felixconfiguration",
                "default",
                "--type=merge",
                "-p",
                &patch
            ])
        );
    }
    let bad = cluster.kubectl([
        "patch",
        "felixconfiguration",
        "default",
        "--type=merge",
        "-p",
        r#"{"spec":{"wireguardListeningPort":70000}}"#,
    ]);
    if bad.status.success() {
        bail!("the API server accepted wireguardListeningPort 70000");
    }
    println!(
        "a bad patch is refused by the API server:\n  {}",
        String::from_utf8_lossy(&bad.stderr).trim()
    );

    s.step("IPAM decisions for the seed (core engine; the agent that applies them comes with the agent issue)");
    seed_ipam()?;

    s.step(
        "real Kubernetes nodes (kubelet + containerd + runc) on the 198.19.0.0/20 fabric: control, node1, node2; host1 outside",
    );
    let kube = KubeLab::start(&["control", "node1", "node2", "host1"])
        .context("starting the kube lab (needs root)")?;
    println!(
        "3 nodes Ready in {:.1}s; daemon logs in {}",
        kube.start_time().as_secs_f64(),
        kube.dir().display()
    );
    let lab = kube.lab();
    let names = ["control", "node1", "node2", "host1"];
    let mut pings = 0;
    for from in names {
        for to in names.iter().filter(|t| **t != from) {
            lab.node(from)
                .ping(&lab.node(to).ip().to_string(), 5)
                .with_context(|| format!("{from} -> {to}"))?;
            pings += 1;
        }
    }
    println!("{pings} pings between the four nodes: all answered");
    println!(
        "$ kubectl get nodes -o wide\n{}",
        kube.kubectl_ok(["get", "nodes", "-o", "wide"])?
    );
    println!(
        "$ ip route   (on node1)\n{}",
        kube.node("node1").exec_ok(["ip", "route"])?
    );
    kube.kubectl_ok(["create", "namespace", "external-ns"])?;
    kube.apply(&NGINX.replace("IMAGE", NGINX_IMAGE))?;
    kube.wait(
        &[
            "-n",
            "external-ns",
            "deployment/nginx",
            "--for=condition=Available",
        ],
        Duration::from_secs(120),
    )?;
    println!(
        "$ kubectl get pods -n external-ns -o wide   (reference bridge CNI until ocelot-cni)\n{}",
        kube.kubectl_ok(["get", "pods", "-n", "external-ns", "-o", "wide"])?
    );

    s.step("not yet implemented (next issues): operator, agent routes/BIRD/WireGuard, CNI pods");
    println!(
        "- blackhole/proto bird routes and `calicoctl node status`-style BGP table need the agent"
    );
    println!("- wireguard.cali and the public key in the Node status need the agent and operator");
    println!("- pods with cali* veths and 169.254.1.1 default routes need ocelot-cni");
    println!(
        "- the nodes' kube-apiserver has no Ocelot CRDs yet: the steps above use the test cluster"
    );

    if keep {
        println!(
            "\n--keep: cluster and namespaces stay up; KUBECONFIG={} ; kube lab: nsenter --net={} kubectl --kubeconfig {} ; press Ctrl-C to stop",
            cluster.kubeconfig_path().display(),
            kube.control().netns().path().display(),
            kube.admin_kubeconfig().display()
        );
        std::thread::sleep(Duration::from_secs(24 * 3600));
    }
    Ok(())
}

/// The seed's addressing decisions, made by the core IPAM engine with Calico's block walk: a /26 per
/// node from the default pool (seed: control 198.19.21.0/26, node1 198.19.22.128/26, node2
/// 198.19.21.64/26), and a /29 of external-pool for a pod in external-ns although that pool selects
/// no node.
fn seed_ipam() -> Result<()> {
    let mut ipam = Ipam::new(IpamConfig::default());
    for f in ["ippool-default.yaml", "ippool-external.yaml"] {
        let text = std::fs::read_to_string(fixture(f))?;
        let doc = ocelot::manifest::parse_documents(&text)?.remove(0);
        let pool: ocelot::api::IPPool = serde_json::from_value(doc)?;
        ipam.upsert_pool(
            pool.metadata.name.as_deref().unwrap_or_default(),
            &pool.spec,
        )?;
    }
    let now = SystemTime::now();
    for node in ["control", "node1", "node2"] {
        let labels = BTreeMap::from([("kubernetes.io/hostname".to_string(), node.to_string())]);
        for pool in ipam.pools_for_node(&labels) {
            let claim = ipam.claim_block(node, &pool, now)?;
            println!(
                "{node}: block {} of {pool} (blackhole {} proto bird on {node})",
                claim.cidr, claim.cidr
            );
        }
    }
    let ns = BTreeMap::from([(
        ocelot::ipam::ANNOTATION_IPV4_POOLS.to_string(),
        r#"["external-pool"]"#.to_string(),
    )]);
    let empty = BTreeMap::new();
    let node_labels = BTreeMap::from([("kubernetes.io/hostname".to_string(), "node1".to_string())]);
    let ctx = PodContext {
        pod_annotations: &empty,
        namespace_annotations: &ns,
        namespace_labels: None,
        node_labels: &node_labels,
    };
    let sel = ipam.select_pools(&ctx)?;
    let req = AssignRequest::pod("0123456789ab", "external-ns", "nginx", "node1", now);
    let assigned = match ipam.auto_assign(&req, Family::V4, &sel.v4) {
        Err(e) if e.needs_block().is_some() => {
            println!("external-ns/nginx on node1: {e}");
            let claim = ipam.claim_block("node1", "external-pool", now)?;
            println!(
                "node1: block {} of external-pool claimed on demand",
                claim.cidr
            );
            ipam.auto_assign(&req, Family::V4, &sel.v4)?
        }
        other => other?,
    };
    println!(
        "external-ns/nginx on node1: {} (seed: 198.19.28.208)",
        assigned.address
    );
    println!(
        "$ ocelotctl ipam show   (as computed)\n{}",
        ipam.show().render(true)
    );
    Ok(())
}
