//! Real Kubernetes nodes (kubelet + containerd + runc) on the seed topology. Needs root and what
//! scripts/setup.sh installs (as CI has).

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ocelot_e2e::kubelab::image;
use ocelot_e2e::kubelab::{KubeLab, NGINX_IMAGE, PAUSE_IMAGE, TOOLS_IMAGE};

const VICTIM_IMAGE: &str = "docker.io/ocelot/victim:lab";
use ocelot_e2e::lab::{
    self, cleanup_stale, find_tool, hold_stale_cleanup, mntns, process_start, retry,
};

const TIMEOUT: Duration = Duration::from_secs(180);

fn start(nodes: &[&str]) -> KubeLab {
    let lab = KubeLab::start(nodes).unwrap_or_else(|e| panic!("kube lab did not start: {e:#}"));
    eprintln!(
        "kube lab {} ({nodes:?}) Ready in {:.1}s",
        lab.prefix(),
        lab.start_time().as_secs_f64()
    );
    lab
}

/// Six nginx replicas, at most one more on any node than on another.
const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 6
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 2
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}
      containers:
      - name: nginx
        image: IMAGE
        imagePullPolicy: Never
        ports: [{containerPort: 80}]
        readinessProbe: {httpGet: {path: /, port: 80}, periodSeconds: 1}
"#;

/// A shell pod pinned to a node; exits at once on SIGTERM.
fn tools_pod(name: &str, node: &str) -> String {
    image_pod(name, node, TOOLS_IMAGE)
}

fn image_pod(name: &str, node: &str, image: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 2
  containers:
  - name: sh
    image: {image}
    imagePullPolicy: Never
    command: ["sh", "-c", "trap 'exit 0' TERM; echo started; cat /etc/marker 2>/dev/null; while :; do sleep 1; done"]
"#
    )
}

/// name -> (node, pod IP) of the pods with `selector`.
fn pods(lab: &KubeLab, selector: &str) -> BTreeMap<String, (String, String)> {
    let out = lab
        .kubectl_ok([
            "get",
            "pods",
            "-l",
            selector,
            "-o",
            r#"jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.status.podIP}{"\n"}{end}"#,
        ])
        .unwrap();
    out.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((
                f.next()?.to_string(),
                (f.next()?.to_string(), f.next()?.to_string()),
            ))
        })
        .collect()
}

fn in_cidr(ip: &str, cidr: &str) -> bool {
    let net = cidr.trim_end_matches(".0/24");
    ip.rsplit_once('.').is_some_and(|(p, _)| p == net)
}

#[test]
fn three_nodes_run_a_deployment() {
    let lab = start(&["control", "node1", "node2", "host1"]);
    let prefix = lab.prefix().to_string();
    let dir = lab.dir().to_path_buf();

    // Three nodes Ready, each with its fabric address as InternalIP.
    let nodes = lab
        .kubectl_ok([
            "get",
            "nodes",
            "-o",
            r#"jsonpath={range .items[*]}{.metadata.name} {.status.addresses[?(@.type=="InternalIP")].address} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#,
        ])
        .unwrap();
    assert_eq!(
        nodes,
        "control 198.19.0.1 True\nnode1 198.19.0.2 True\nnode2 198.19.0.3 True\n"
    );
    // The host's netns sends lab addresses nowhere while the lab lives.
    let host_routes = Command::new(find_tool("ip").unwrap())
        .args(["route", "show", lab::host::LAB_RANGE])
        .output()
        .unwrap();
    let host_routes = String::from_utf8_lossy(&host_routes.stdout);
    assert!(
        host_routes.contains(&format!("blackhole {}", lab::host::LAB_RANGE)),
        "{host_routes}"
    );
    // Host-side clients reach the API through the loopback forwarder.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let names: Vec<String> = rt.block_on(async {
        let client = lab.client().await.unwrap();
        let api: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client);
        let list = api.list(&Default::default()).await.unwrap();
        list.items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect()
    });
    assert_eq!(names, ["control", "node1", "node2"]);
    for n in lab.nodes() {
        let link = n.exec_ok(["ip", "-o", "link", "show", "ens4"]).unwrap();
        assert!(link.contains("mtu 1460"), "{}: {link}", n.name());
    }

    lab.apply(&WEB.replace("IMAGE", NGINX_IMAGE)).unwrap();
    lab.wait(&["deployment/web", "--for=condition=Available"], TIMEOUT)
        .unwrap_or_else(|e| {
            panic!(
                "{e:#}\n{}",
                lab.kubectl_ok(["get", "pods", "-o", "wide"])
                    .unwrap_or_default()
            )
        });
    // Available means replicas - maxUnavailable (25%: 5 of 6) are ready; wait for every pod.
    lab.wait(&["pod", "-l", "app=web", "--for=condition=Ready"], TIMEOUT)
        .unwrap_or_else(|e| {
            panic!(
                "{e:#}\n{}",
                lab.kubectl_ok(["get", "pods", "-o", "wide"])
                    .unwrap_or_default()
            )
        });
    let web = pods(&lab, "app=web");
    assert_eq!(web.len(), 6, "{web:?}");
    let mut per_node: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for (pod, (node, ip)) in &web {
        per_node.entry(node).or_default().push((pod, ip));
    }
    assert_eq!(
        per_node
            .iter()
            .map(|(n, p)| (*n, p.len()))
            .collect::<Vec<_>>(),
        vec![("control", 2), ("node1", 2), ("node2", 2)],
        "{web:?}"
    );

    // exec, logs and port-forward on a pod of each node.
    for (i, (node, list)) in per_node.iter().enumerate() {
        let (pod, ip) = list[0];
        assert!(
            in_cidr(ip, lab.node(node).pod_cidr()),
            "{pod} on {node}: {ip}"
        );
        let addr = lab
            .kubectl_ok(["exec", pod, "--", "ip", "addr", "show", "eth0"])
            .unwrap();
        assert!(addr.contains(&format!("inet {ip}/24")), "{pod}: {addr}");
        let port = 18080 + i;
        let fwd = lab
            .kubectl_spawn(["port-forward", &format!("pod/{pod}"), &format!("{port}:80")])
            .unwrap();
        fwd.wait_for_log("Forwarding from", Duration::from_secs(30))
            .unwrap();
        let url = format!("http://127.0.0.1:{port}/hostname");
        let body = lab
            .control()
            .netns()
            .exec_ok(["curl", "-sS", "--max-time", "10", &url])
            .unwrap();
        assert_eq!(body.trim(), pod, "port-forward to {pod} answered {body:?}");
        drop(fwd);
        let logs = lab.kubectl_ok(["logs", pod]).unwrap();
        assert!(logs.contains("GET /hostname"), "{pod} logs: {logs}");
    }

    // Pods on different nodes reach each other (HTTP and ping, through the fabric).
    let (from_pod, _) = per_node["node1"][0];
    for target in ["control", "node2"] {
        let (to_pod, to_ip) = per_node[target][0];
        let reply = lab
            .kubectl_ok([
                "exec",
                from_pod,
                "--",
                "sh",
                "-c",
                &format!("printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {to_ip} 80"),
            ])
            .unwrap();
        assert!(reply.contains(to_pod), "{from_pod} -> {to_pod}: {reply}");
        lab.kubectl_ok(["exec", from_pod, "--", "ping", "-c1", "-W2", to_ip])
            .unwrap();
    }

    // A deleted pod frees its address and its cni-… netns on its node.
    let node2 = lab.node("node2");
    // An image built by the test and imported into every node.
    let mut custom = image::tools().unwrap().with_name(VICTIM_IMAGE);
    custom.bytes("/etc/marker", "made-by-the-test\n", 0o644);
    lab.import(&custom).unwrap();
    for n in lab.nodes() {
        let images = n.ctr(["images", "ls", "-q"]).unwrap();
        for want in [PAUSE_IMAGE, TOOLS_IMAGE, NGINX_IMAGE, VICTIM_IMAGE] {
            assert!(images.lines().any(|l| l == want), "{}: {images}", n.name());
        }
    }
    lab.apply(&image_pod("victim", "node2", VICTIM_IMAGE))
        .unwrap();
    lab.wait(&["pod/victim", "--for=condition=Ready"], TIMEOUT)
        .unwrap();
    let ip = lab
        .kubectl_ok(["get", "pod", "victim", "-o", "jsonpath={.status.podIP}"])
        .unwrap();
    let netns = node2
        .cni_netns()
        .unwrap()
        .into_iter()
        .find(|ns| {
            node2
                .exec_ok(["ip", "-n", ns, "-o", "addr"])
                .is_ok_and(|a| a.contains(&format!("inet {ip}/")))
        })
        .unwrap_or_else(|| panic!("no cni-… netns on node2 holds {ip}"));
    let links = node2.exec_ok(["ip", "-d", "link"]).unwrap();
    assert!(links.contains(&format!("link-netns {netns}")), "{links}");
    let lease = node2
        .dir()
        .join("host/var-lib-cni/networks/ocelot-lab")
        .join(&ip);
    assert!(lease.exists(), "{} missing", lease.display());
    assert!(
        lab.kubectl_ok(["logs", "victim"])
            .unwrap()
            .contains("started\nmade-by-the-test")
    );
    lab.kubectl_ok(["delete", "pod", "victim", "--wait=true", "--timeout=60s"])
        .unwrap();
    retry(
        "netns and lease freed",
        300,
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let left = node2.cni_netns()?;
            anyhow::ensure!(!left.contains(&netns), "{netns} still on node2: {left:?}");
            anyhow::ensure!(!lease.exists(), "{} still there", lease.display());
            Ok(())
        },
    )
    .unwrap();

    // Normal exit: dropping the lab leaves nothing behind.
    let pids = processes(&lab);
    assert!(pids.len() > 12, "daemons, shims and containers: {pids:?}");
    drop(lab);
    assert_all_gone(&prefix, &pids);
    assert!(!dir.exists(), "{} kept after a clean run", dir.display());
}

/// Everything on the machine that still carries `prefix`: netns, mount namespace files, mounts, cgroups,
/// root links and processes whose command line mentions it.
fn leftovers(prefix: &str) -> Vec<String> {
    let mut left = Vec::new();
    for dir in [lab::NETNS_DIR, mntns::MNTNS_DIR] {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.contains(prefix) {
                left.push(format!("{dir}/{name}"));
            }
        }
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    left.extend(
        info.lines()
            .filter(|l| l.contains(prefix))
            .map(|l| format!("mount {l}")),
    );
    for h in lab::cgroup::hierarchies() {
        for e in std::fs::read_dir(&h.mount).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().contains(prefix) {
                left.push(format!("cgroup {}", e.path().display()));
            }
        }
    }
    let links = Command::new(find_tool("ip").unwrap())
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    left.extend(
        lab::root_links_with_prefix(&String::from_utf8_lossy(&links.stdout), prefix)
            .into_iter()
            .map(|l| format!("link {l}")),
    );
    let me = std::process::id();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me || process_start(pid).is_none() {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(prefix) {
            left.push(format!("process {pid}: {cmdline}"));
        }
    }
    left
}

/// The lab's processes with their start times, so a pid reused meanwhile is not mistaken for a survivor.
/// A pid counts only if it is still in the lab after its start time was read (a process that exited and
/// whose pid went to an unrelated process in between is dropped).
fn processes(lab: &KubeLab) -> Vec<(u32, u64)> {
    let first: Vec<(u32, u64)> = lab
        .all_pids()
        .into_iter()
        .filter_map(|p| Some((p, process_start(p)?)))
        .collect();
    let again = lab.all_pids();
    first
        .into_iter()
        .filter(|(p, start)| again.contains(p) && process_start(*p) == Some(*start))
        .collect()
}

fn alive(procs: &[(u32, u64)]) -> Vec<u32> {
    procs
        .iter()
        .filter(|(p, start)| process_start(*p) == Some(*start))
        .map(|(p, _)| *p)
        .collect()
}

fn assert_all_gone(prefix: &str, pids: &[(u32, u64)]) {
    // SIGKILL is asynchronous: a killed process may still be tearing down (empty cmdline, no
    // namespaces) for a moment. Give exits a bounded 10 s before calling anything a survivor.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !alive(pids).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let alive: Vec<String> = alive(pids)
        .into_iter()
        .map(|p| {
            let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            let net = std::fs::read_link(format!("/proc/{p}/ns/net")).unwrap_or_default();
            let cg = std::fs::read_to_string(format!("/proc/{p}/cgroup")).unwrap_or_default();
            format!(
                "{p}: {} (net {}; cgroups {})",
                String::from_utf8_lossy(&cmd).replace('\0', " "),
                net.display(),
                cg.lines().next().unwrap_or_default()
            )
        })
        .collect();
    assert!(
        alive.is_empty(),
        "processes of {prefix} still alive: {alive:#?}"
    );
    let left = leftovers(prefix);
    assert!(left.is_empty(), "left behind by {prefix}: {left:#?}");
}

/// A one-node lab with a running pod (so there are shims, containers and a pod netns to clean up).
fn one_node_with_pod() -> KubeLab {
    let lab = start(&["control"]);
    lab.apply(&tools_pod("sh", "control")).unwrap();
    lab.wait(&["pod/sh", "--for=condition=Ready"], TIMEOUT)
        .unwrap();
    assert_eq!(lab.control().cni_netns().unwrap().len(), 1);
    lab
}

#[test]
fn panic_still_cleans_up() {
    let mut seen = None;
    let result = catch_unwind(AssertUnwindSafe(|| {
        let lab = one_node_with_pod();
        seen = Some((
            lab.prefix().to_string(),
            processes(&lab),
            lab.dir().to_path_buf(),
        ));
        panic!("deliberate panic inside a kube lab test");
    }));
    assert!(result.is_err());
    let (prefix, pids, dir) = seen.expect("lab was up before the panic");
    assert_all_gone(&prefix, &pids);
    // Logs are kept after a failure, for diagnosis; this one was deliberate.
    assert!(dir.join("control.kubelet.log").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

const CRASH_ENV: &str = "OCELOT_E2E_KUBELAB_CRASH_HELPER";

/// Only does something when started by `killed_run_is_cleaned_up`: brings a lab up and SIGKILLs itself.
#[test]
fn crash_helper() {
    if std::env::var_os(CRASH_ENV).is_none() {
        return;
    }
    let lab = one_node_with_pod();
    let pids: Vec<String> = processes(&lab)
        .iter()
        .map(|(p, s)| format!("{p}:{s}"))
        .collect();
    // On their own lines: the harness prints "test crash_helper ... " without a newline first.
    println!("\nCRASH-PREFIX={}", lab.prefix());
    println!("CRASH-DIR={}", lab.dir().display());
    println!("CRASH-PIDS={}", pids.join(","));
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    // SAFETY: plain syscall; kills this process the way a CI timeout or OOM kill would.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    unreachable!("SIGKILL was sent");
}

#[test]
fn killed_run_is_cleaned_up() {
    let (prefix, pids, dir) = {
        // Keep other tests' labs from sweeping the crash's leftovers before we look.
        let _hold = hold_stale_cleanup().unwrap();
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_helper", "--nocapture", "--test-threads=1"])
            .env(CRASH_ENV, "1")
            .output()
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGKILL),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let field = |k: &str| {
            stdout
                .lines()
                .find_map(|l| l.trim().strip_prefix(k))
                .unwrap_or_else(|| panic!("no {k} in {stdout}"))
                .to_string()
        };
        let prefix = field("CRASH-PREFIX=");
        let pids: Vec<(u32, u64)> = field("CRASH-PIDS=")
            .split(',')
            .map(|p| {
                let (pid, start) = p.split_once(':').unwrap();
                (pid.parse().unwrap(), start.parse().unwrap())
            })
            .collect();
        let left = leftovers(&prefix);
        for kind in [lab::NETNS_DIR, mntns::MNTNS_DIR, "cgroup "] {
            assert!(
                left.iter().any(|l| l.starts_with(kind)),
                "the killed run should have left {kind}…: {left:#?}"
            );
        }
        assert!(
            !alive(&pids).is_empty(),
            "shims and containers outlive a killed run: {pids:?}"
        );
        (prefix, pids, field("CRASH-DIR="))
    };
    cleanup_stale().unwrap();
    assert_all_gone(&prefix, &pids);
    let _ = std::fs::remove_dir_all(Path::new(&dir));
}

/// The way a chart installs a CNI: a hostNetwork DaemonSet writes the conflist into the node's
/// /etc/cni/net.d (hostPath), which is the node's own folder, not the machine's.
#[test]
fn cni_installed_by_a_daemonset() {
    use ocelot_e2e::kubelab::{Cni, KubeLabConfig, config};
    let lab = KubeLab::start_with(KubeLabConfig::new(&["control"]).cni(Cni::Installed))
        .unwrap_or_else(|e| panic!("kube lab did not start: {e:#}"));
    let node = lab.control();
    let ready = || {
        lab.kubectl_ok([
            "get",
            "node",
            "control",
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#,
        ])
        .unwrap()
    };
    assert_eq!(ready(), "False", "no CNI yet");
    let conflist = config::bridge_conflist(node.pod_cidr(), 1460);
    let indented: String = conflist.lines().map(|l| format!("    {l}\n")).collect();
    let yaml = format!(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: cni-config, namespace: kube-system}}
data:
  10-lab.conflist: |
{indented}---
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: install-cni, namespace: kube-system}}
spec:
  selector: {{matchLabels: {{app: install-cni}}}}
  template:
    metadata: {{labels: {{app: install-cni}}}}
    spec:
      hostNetwork: true
      tolerations: [{{operator: Exists}}]
      terminationGracePeriodSeconds: 1
      containers:
      - name: install
        image: {TOOLS_IMAGE}
        imagePullPolicy: Never
        command: ["sh", "-c", "cp /cfg/10-lab.conflist /host/etc/cni/net.d/ && trap 'exit 0' TERM; while :; do sleep 1; done"]
        volumeMounts:
        - {{name: cfg, mountPath: /cfg}}
        - {{name: netd, mountPath: /host/etc/cni/net.d}}
      volumes:
      - {{name: cfg, configMap: {{name: cni-config}}}}
      - {{name: netd, hostPath: {{path: /etc/cni/net.d}}}}
"#
    );
    lab.apply(&yaml).unwrap();
    lab.wait(&["node/control", "--for=condition=Ready"], TIMEOUT)
        .unwrap();
    let installed = node.dir().join("host/etc-cni-net.d/10-lab.conflist");
    assert!(installed.exists(), "{} missing", installed.display());
    assert!(!Path::new("/etc/cni/net.d/10-lab.conflist").exists());
    lab.apply(&tools_pod("after", "control")).unwrap();
    lab.wait(&["pod/after", "--for=condition=Ready"], TIMEOUT)
        .unwrap();
    let ip = lab
        .kubectl_ok(["get", "pod", "after", "-o", "jsonpath={.status.podIP}"])
        .unwrap();
    assert!(in_cidr(&ip, node.pod_cidr()), "{ip}");
}
