//! Bringing a kube lab up: preconditions, PKI, per-node namespaces and cgroups, daemons, readiness.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use super::config;
use super::image;
use super::{
    API_PORT, CONTROL_NODE, Cni, CniNode, KubeLab, KubeLabConfig, KubeNode, OUTSIDE_NODES,
    START_TIMEOUT,
};
use crate::cluster::{APISERVER_NAMES, APISERVER_SERVICE_IP, apiserver_pki_args, bin_dir, binary};
use crate::lab::{
    self, Lab, NODE_MTU, SEED_NODES, cgroup, mntns, require_root, require_tools, retry,
};
use crate::pki::{Ca, service_account_keys, write_secret};
use crate::proc::{spawn_server, tail};

/// Binaries from e2e/cluster/build.sh the lab runs.
const BINARIES: &[&str] = &[
    "etcd",
    "kube-apiserver",
    "kube-scheduler",
    "kube-controller-manager",
    "kubelet",
    "kubectl",
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
];

/// Paths kubelet and containerd (and the CNI plugins, and mount(8)) use without a setting to move them:
/// each node bind-mounts a folder of its own over them, in its mount namespace.
const HARD_CODED: &[(&str, &str)] = &[
    ("var-lib-kubelet", "/var/lib/kubelet"), // device-plugins/kubelet.sock, pod volumes, certs
    ("var-log-pods", "/var/log/pods"),
    ("var-log-containers", "/var/log/containers"),
    ("usr-libexec-kubernetes", "/usr/libexec/kubernetes"), // volume plugin dir
    ("var-lib-cni", "/var/lib/cni"), // libcni's result cache, host-local's leases
    ("run-containerd", "/run/containerd"), // shim sockets
    ("run-netns", "/run/netns"),     // the pods' cni-… netns files
    ("run-mount", "/run/mount"),     // mount(8)'s utab
    ("etc-cni-net.d", "/etc/cni/net.d"), // CNI config, where charts install it
    ("opt-cni-bin", "/opt/cni/bin"), // CNI plugins, where charts install them
    ("var-lib-ocelot", "/var/lib/ocelot"), // the agent's state (hostPath in the chart)
    ("run-ocelot", "/run/ocelot"),   // the agent's CNI socket (hostPath /var/run/ocelot)
];

/// Bind targets whose later submounts must reach containers (the agent's HostToContainer mount of
/// the pods' netns files).
const SHARED: &[&str] = &["/run/netns"];

/// The pod CIDR of the i-th kube node (reference CNI): 198.19.48.0/24, 198.19.49.0/24, … inside the lab's
/// range, apart from the fabric (198.19.0.0/20), the seed's IP pools (198.19.16.0/20) and the service range
/// (198.19.32.0/20).
pub fn pod_cidr(index: usize) -> String {
    format!("198.19.{}.0/24", 48 + index)
}

fn preflight() -> Result<()> {
    require_root()?;
    require_tools(&[
        "ip", "nsenter", "unshare", "mount", "umount", "sh", "awk", "ldd",
    ])?;
    for b in BINARIES {
        binary(b)?;
    }
    for (what, path) in [
        ("runc (Debian package runc)", config::RUNC.to_string()),
        (
            "CNI bridge plugin (containernetworking-plugins)",
            format!("{}/bridge", config::REFERENCE_CNI_BIN),
        ),
        (
            "CNI host-local plugin",
            format!("{}/host-local", config::REFERENCE_CNI_BIN),
        ),
        (
            "CNI loopback plugin",
            format!("{}/loopback", config::REFERENCE_CNI_BIN),
        ),
        ("busybox (busybox-static)", image::BUSYBOX.to_string()),
        (
            "catatonit (the pause process)",
            image::CATATONIT.to_string(),
        ),
    ] {
        ensure!(
            Path::new(&path).exists(),
            "the kube lab needs {what} at {path}; install it with scripts/setup.sh (as root)"
        );
    }
    cgroup::check_kubelet_controllers()?;
    Ok(())
}

fn seed_ip(name: &str) -> Result<&'static str> {
    SEED_NODES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, ip)| *ip)
        .with_context(|| {
            let names: Vec<&str> = SEED_NODES.iter().map(|(n, _)| *n).collect();
            format!("kube lab node {name:?} is not a seed node ({names:?})")
        })
}

pub(super) fn start(cfg: KubeLabConfig) -> Result<KubeLab> {
    let mut kl = None;
    match bring_up(cfg, &mut kl) {
        Ok(()) => Ok(kl.expect("set on success")),
        Err(e) => {
            // Dropping `kl` cleans up; the logs stay for diagnosis, and the error shows their ends.
            let Some(mut kl) = kl else { return Err(e) };
            let mut tails = String::new();
            for p in &kl.procs {
                tails.push_str(&format!(
                    "\n--- last lines of {}:\n{}",
                    p.log_path().display(),
                    tail(p.log_path(), 8)
                ));
            }
            if let Some(lab) = kl.lab.as_mut() {
                lab.keep_logs();
            }
            Err(e.context(format!(
                "kube lab start failed; logs kept in {}{tails}",
                kl.dir().display()
            )))
        }
    }
}

fn bring_up(cfg: KubeLabConfig, out: &mut Option<KubeLab>) -> Result<()> {
    let t0 = Instant::now();
    ensure!(
        cfg.nodes.iter().any(|n| n == CONTROL_NODE),
        "a kube lab needs the {CONTROL_NODE:?} node (it runs the control plane); got {:?}",
        cfg.nodes
    );
    preflight()?;
    let mut netlab = Lab::new()?;
    // kubelet changes host-wide sysctls; the last lab (or the stale sweep) puts them back.
    lab::host::save_kubelet_sysctls().context("saving host sysctls")?;
    for name in &cfg.nodes {
        netlab.add_node(name, seed_ip(name)?)?;
    }
    let dir = netlab.dir().to_path_buf();
    let pki = dir.join("pki");
    let kl = KubeLab {
        nodes: Vec::new(),
        cni: cfg.cni.clone(),
        pki: pki.clone(),
        admin_kubeconfig: dir.join("admin.kubeconfig"),
        api_forward: None,
        host_kubeconfig: dir.join("host.kubeconfig"),
        images: Vec::new(),
        procs: Vec::new(),
        start_time: Duration::ZERO,
        lab: Some(netlab),
    };
    // From here an early return leaves `kl` in `out`; start() drops it, which removes what was made.
    let kl = out.insert(kl);
    let kube_names: Vec<&String> = cfg
        .nodes
        .iter()
        .filter(|n| !OUTSIDE_NODES.contains(&n.as_str()))
        .collect();
    for (i, name) in kube_names.iter().enumerate() {
        let netlab = kl.lab();
        let node = netlab.node(name).clone();
        let cg = netlab.run_id().netns_name(name);
        let node_dir = dir.join(name.as_str());
        // Registered before creation, so a failure half-way is cleaned up.
        kl.nodes.push(KubeNode {
            node,
            dir: node_dir.clone(),
            mntns: mntns::path(&cg),
            cgroup: cg.clone(),
            pod_cidr: pod_cidr(i),
        });
        cgroup::create(&cg).with_context(|| format!("cgroup root of node {name}"))?;
        let binds: Vec<(PathBuf, &str)> = HARD_CODED
            .iter()
            .map(|(src, dst)| (node_dir.join("host").join(src), *dst))
            .collect();
        mntns::create(&cg, &binds, SHARED)
            .with_context(|| format!("mount namespace of node {name}"))?;
    }
    write_pki(kl)?;
    kl.images = image::write_all(&dir.join("images")).context("building the lab's images")?;
    for n in &kl.nodes {
        write_node_configs(kl, n)?;
    }
    start_control_plane(kl)?;
    let api = std::net::SocketAddr::from((kl.control().ip(), API_PORT));
    let fwd = super::Forwarder::start(&kl.control().netns().path(), api)?;
    let p = |f: &str| kl.pki.join(f);
    std::fs::write(
        &kl.host_kubeconfig,
        config::kubeconfig(
            &format!("https://{}", fwd.local_addr()),
            &p("ca.crt"),
            &p("admin.crt"),
            &p("admin.key"),
        ),
    )?;
    kl.api_forward = Some(fwd);
    for i in 0..kl.nodes.len() {
        let p = start_containerd(kl, &kl.nodes[i])?;
        kl.procs.push(p);
    }
    // Each node's containerd start and image import, and the API server's start, overlap.
    std::thread::scope(|s| -> Result<()> {
        let kl = &*kl;
        let mut jobs = vec![s.spawn(move || wait_api(kl, t0))];
        for n in &kl.nodes {
            jobs.push(s.spawn(move || {
                wait_containerd(kl, n)?;
                kl.images.iter().try_for_each(|a| n.import_image(a))
            }));
        }
        for j in jobs {
            j.join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("a start-up thread panicked")))?;
        }
        Ok(())
    })?;
    start_controllers(kl)?;
    for i in 0..kl.nodes.len() {
        let p = start_kubelet(kl, &kl.nodes[i])?;
        kl.procs.push(p);
    }
    if matches!(kl.cni, Cni::Bridge) {
        add_pod_routes(kl)?;
    }
    wait_ready(kl, t0)?;
    kl.start_time = t0.elapsed();
    Ok(())
}

fn write_pki(kl: &KubeLab) -> Result<()> {
    let dir = &kl.pki;
    let ca = Ca::new("ocelot-kubelab-ca")?;
    write_secret(&dir.join("ca.crt"), &ca.cert_pem())?;
    write_secret(&dir.join("ca.key"), ca.key_pem())?;
    let control_ip = kl.control().ip().to_string();
    ca.server(
        "kube-apiserver",
        &[
            &control_ip,
            "127.0.0.1",
            APISERVER_SERVICE_IP,
            APISERVER_NAMES[0],
            APISERVER_NAMES[1],
            APISERVER_NAMES[2],
            APISERVER_NAMES[3],
            APISERVER_NAMES[4],
        ],
    )?
    .write(dir, "apiserver")?;
    ca.client("ocelot-kubelab-admin", &["system:masters"])?
        .write(dir, "admin")?;
    // The API server's client cert towards kubelets (their webhook authorizer lets system:masters in).
    ca.client("kube-apiserver-kubelet-client", &["system:masters"])?
        .write(dir, "apiserver-kubelet-client")?;
    // Node authorizer + NodeRestriction: each kubelet is system:node:<name> in system:nodes.
    for n in &kl.nodes {
        ca.client(&format!("system:node:{}", n.name()), &["system:nodes"])?
            .write(dir, &format!("kubelet-{}", n.name()))?;
    }
    let (sa_key, sa_pub) = service_account_keys()?;
    write_secret(&dir.join("sa.key"), &sa_key)?;
    write_secret(&dir.join("sa.pub"), &sa_pub)?;
    let p = |f: &str| dir.join(f);
    std::fs::write(
        &kl.admin_kubeconfig,
        config::kubeconfig(
            &kl.api_url(),
            &p("ca.crt"),
            &p("admin.crt"),
            &p("admin.key"),
        ),
    )?;
    Ok(())
}

fn write_node_configs(kl: &KubeLab, n: &KubeNode) -> Result<()> {
    // The node's own /etc/cni/net.d and /opt/cni/bin (bind-mounted in its mount namespace), where a
    // chart's install-cni DaemonSet (hostPath volumes) would put them too.
    let conf_dir = n.dir.join("host/etc-cni-net.d");
    let bin_dir = n.dir.join("host/opt-cni-bin");
    std::fs::create_dir_all(&conf_dir)?;
    std::fs::create_dir_all(&bin_dir)?;
    let conflist = match &kl.cni {
        Cni::Bridge => Some(config::bridge_conflist(&n.pod_cidr, NODE_MTU)),
        Cni::Custom {
            bin_dir: from,
            conflist,
        } => {
            for e in
                std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))?
            {
                let e = e?;
                std::fs::copy(e.path(), bin_dir.join(e.file_name())).with_context(|| {
                    format!("copying {} into node {}", e.path().display(), n.name())
                })?;
            }
            Some(conflist(&CniNode {
                name: n.name().to_string(),
                ip: n.ip(),
                pod_cidr: n.pod_cidr.clone(),
            }))
        }
        Cni::Installed => None,
    };
    if let Some(c) = conflist {
        std::fs::write(conf_dir.join("10-ocelot-lab.conflist"), c)?;
    }
    std::fs::write(
        n.dir.join("containerd.toml"),
        config::containerd_toml(&n.dir),
    )?;
    std::fs::write(
        n.dir.join("kubelet.yaml"),
        config::kubelet_yaml(
            n.ip(),
            &n.cgroup,
            &n.containerd_socket(),
            &kl.pki.join("ca.crt"),
        ),
    )?;
    let p = |f: String| kl.pki.join(f);
    std::fs::write(
        n.dir.join("kubelet.kubeconfig"),
        config::kubeconfig(
            &kl.api_url(),
            &kl.pki.join("ca.crt"),
            &p(format!("kubelet-{}.crt", n.name())),
            &p(format!("kubelet-{}.key", n.name())),
        ),
    )?;
    Ok(())
}

/// A daemon command inside a node: nsenter into its netns (and mount namespace), with the build folder and
/// the system folders on PATH (containerd finds its shim and runc there; kubelet calls mount/umount).
fn daemon(kl: &KubeLab, n: &KubeNode, with_mount_ns: bool, bin: &str) -> Result<Command> {
    let path = binary(bin)?;
    let mut cmd = super::nsenter(
        n.netns(),
        with_mount_ns.then_some(n.mntns.as_path()),
        [path.as_os_str()],
    );
    cmd.env(
        "PATH",
        format!(
            "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            bin_dir().display()
        ),
    );
    let _ = kl;
    Ok(cmd)
}

fn log_path(kl: &KubeLab, node: &str, daemon: &str) -> PathBuf {
    kl.dir().join(format!("{node}.{daemon}.log"))
}

fn start_control_plane(kl: &mut KubeLab) -> Result<()> {
    let control = kl.control();
    let ip = control.ip();
    let data = control.dir.join("etcd");
    let mut etcd = daemon(kl, control, false, "etcd")?;
    // etcd on the control node's loopback: only kube-apiserver talks to it.
    etcd.arg("--name=control")
        .arg(format!("--data-dir={}", data.display()))
        .arg("--listen-client-urls=http://127.0.0.1:2379")
        .arg("--advertise-client-urls=http://127.0.0.1:2379")
        .arg("--listen-peer-urls=http://127.0.0.1:2380")
        .arg("--initial-advertise-peer-urls=http://127.0.0.1:2380")
        .arg("--initial-cluster=control=http://127.0.0.1:2380")
        .arg("--listen-metrics-urls=")
        // Test data is thrown away: fsync would only slow every write.
        .arg("--unsafe-no-fsync=true")
        .arg("--log-level=warn");
    let etcd = spawn_server("etcd", etcd, &log_path(kl, CONTROL_NODE, "etcd"))?;
    let p = |f: &str| kl.pki.join(f).display().to_string();
    let mut api = daemon(kl, control, false, "kube-apiserver")?;
    api.arg("--etcd-servers=http://127.0.0.1:2379")
        .arg(format!("--bind-address={ip}"))
        .arg(format!("--advertise-address={ip}"))
        .arg(format!("--secure-port={API_PORT}"))
        .args(apiserver_pki_args(&kl.pki))
        .arg("--authorization-mode=Node,RBAC")
        .arg("--enable-admission-plugins=NodeRestriction")
        .arg("--allow-privileged=true")
        .arg("--profiling=false")
        // Work-around / network rule: dial kubelets by their InternalIP (on the fabric); the default
        // prefers Hostname, which the API server would resolve through the machine's resolver.
        .arg("--kubelet-preferred-address-types=InternalIP")
        .arg(format!(
            "--kubelet-client-certificate={}",
            p("apiserver-kubelet-client.crt")
        ))
        .arg(format!(
            "--kubelet-client-key={}",
            p("apiserver-kubelet-client.key")
        ));
    let api = spawn_server(
        "kube-apiserver",
        api,
        &log_path(kl, CONTROL_NODE, "kube-apiserver"),
    )?;
    kl.procs.push(etcd);
    kl.procs.push(api);
    Ok(())
}

fn start_controllers(kl: &mut KubeLab) -> Result<()> {
    let control = kl.control();
    let kc = kl.admin_kubeconfig.display().to_string();
    let p = |f: &str| kl.pki.join(f).display().to_string();
    let mut sched = daemon(kl, control, false, "kube-scheduler")?;
    // No serving port (nothing scrapes it) and no leader election (one replica).
    sched
        .arg(format!("--kubeconfig={kc}"))
        .arg(format!("--authentication-kubeconfig={kc}"))
        .arg(format!("--authorization-kubeconfig={kc}"))
        .arg("--leader-elect=false")
        .arg("--secure-port=0");
    let sched = spawn_server(
        "kube-scheduler",
        sched,
        &log_path(kl, CONTROL_NODE, "kube-scheduler"),
    )?;
    let mut kcm = daemon(kl, control, false, "kube-controller-manager")?;
    kcm.arg(format!("--kubeconfig={kc}"))
        .arg(format!("--authentication-kubeconfig={kc}"))
        .arg(format!("--authorization-kubeconfig={kc}"))
        .arg("--leader-elect=false")
        .arg("--secure-port=0")
        .arg(format!(
            "--service-account-private-key-file={}",
            p("sa.key")
        ))
        .arg(format!("--root-ca-file={}", p("ca.crt")))
        .arg(format!("--cluster-signing-cert-file={}", p("ca.crt")))
        .arg(format!("--cluster-signing-key-file={}", p("ca.key")))
        .arg("--use-service-account-credentials=true")
        .arg("--controllers=*");
    let kcm = spawn_server(
        "kube-controller-manager",
        kcm,
        &log_path(kl, CONTROL_NODE, "kube-controller-manager"),
    )?;
    kl.procs.push(sched);
    kl.procs.push(kcm);
    Ok(())
}

fn start_containerd(kl: &KubeLab, n: &KubeNode) -> Result<crate::proc::ServerProcess> {
    let mut cmd = daemon(kl, n, true, "containerd")?;
    cmd.arg("--config").arg(n.dir.join("containerd.toml"));
    spawn_server(
        &format!("containerd-{}", n.name()),
        cmd,
        &log_path(kl, n.name(), "containerd"),
    )
}

fn start_kubelet(kl: &KubeLab, n: &KubeNode) -> Result<crate::proc::ServerProcess> {
    let mut cmd = daemon(kl, n, true, "kubelet")?;
    cmd.arg(format!("--config={}", n.dir.join("kubelet.yaml").display()))
        .arg(format!(
            "--kubeconfig={}",
            n.dir.join("kubelet.kubeconfig").display()
        ))
        .arg(format!("--hostname-override={}", n.name()))
        .arg(format!("--node-ip={}", n.ip()))
        .arg("-v=2");
    spawn_server(
        &format!("kubelet-{}", n.name()),
        cmd,
        &log_path(kl, n.name(), "kubelet"),
    )
}

/// Fails if a daemon has exited, naming it with the end of its log.
fn check_daemons(kl: &KubeLab) -> Result<()> {
    for p in &kl.procs {
        if let Some(st) = p.exited() {
            bail!(
                "{} exited ({st}); last lines of {}:\n{}",
                p.name(),
                p.log_path().display(),
                tail(p.log_path(), 30)
            );
        }
    }
    Ok(())
}

fn wait_containerd(kl: &KubeLab, n: &KubeNode) -> Result<()> {
    retry(
        &format!("containerd on {}", n.name()),
        300,
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            check_daemons(kl)?;
            n.ctr(["version"]).map(drop)
        },
    )
}

fn wait_api(kl: &KubeLab, t0: Instant) -> Result<()> {
    retry(
        "kube-apiserver /readyz",
        1200,
        START_TIMEOUT.saturating_sub(t0.elapsed()),
        Duration::from_millis(200),
        || {
            check_daemons(kl)?;
            let out = kl.kubectl_timeout(
                ["get", "--raw", "/readyz", "--request-timeout=5s"],
                None,
                Duration::from_secs(10),
            );
            ensure!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            Ok(())
        },
    )
}

/// Routes every node's pod CIDR to that node over the fabric (the reference bridge plugin only sets up
/// its own node).
fn add_pod_routes(kl: &KubeLab) -> Result<()> {
    for a in &kl.nodes {
        for b in &kl.nodes {
            if a.name() != b.name() {
                let via: Ipv4Addr = b.ip();
                a.netns().exec_ok([
                    "ip",
                    "route",
                    "add",
                    b.pod_cidr(),
                    "via",
                    &via.to_string(),
                    "dev",
                    lab::NODE_IFACE,
                ])?;
            }
        }
    }
    Ok(())
}

/// Waits until every node is Ready (with [`Cni::Installed`]: registered, NotReady until a DaemonSet
/// installs the CNI) and the default ServiceAccount exists.
fn wait_ready(kl: &KubeLab, t0: Instant) -> Result<()> {
    let installed = matches!(kl.cni, Cni::Installed);
    let want: Vec<String> = kl
        .nodes
        .iter()
        .map(|n| format!("{}={}", n.name(), if installed { "False" } else { "True" }))
        .collect();
    let jsonpath = r#"{range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#;
    retry(
        "every kube node Ready",
        2000,
        START_TIMEOUT.saturating_sub(t0.elapsed()),
        Duration::from_millis(250),
        || {
            check_daemons(kl)?;
            let out = kl.kubectl_ok(["get", "nodes", "-o", &format!("jsonpath={jsonpath}")])?;
            let have: Vec<&str> = out.lines().collect();
            ensure!(
                want.iter().all(|w| have.contains(&w.as_str())),
                "nodes: {have:?}, want {want:?}"
            );
            // Pods are refused until the controller-manager made the namespace's ServiceAccount.
            kl.kubectl_ok(["get", "serviceaccount", "default", "-n", "default"])?;
            Ok(())
        },
    )
}
