//! The test cluster itself: it starts, kubectl and kube-rs both reach it, watches see kubectl's changes,
//! and none of its processes outlive the test binary.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use ocelot::api::IPPool;
use ocelot_e2e::cluster::{self, check, kubectl, kubectl_stdin};

#[test]
fn readyz_says_ok() {
    let out = check(
        kubectl(["get", "--raw", "/readyz"]),
        "kubectl get --raw /readyz",
    );
    assert_eq!(out.trim(), "ok");
}

#[test]
fn every_crd_in_the_repo_is_established() {
    let errors = cluster::shared().crd_errors();
    assert!(
        errors.is_empty(),
        "CRDs not installed:\n{}",
        errors.join("\n")
    );
    let Ok(entries) = std::fs::read_dir(cluster::repo_root().join("crds")) else {
        return;
    };
    for file in entries.flatten().map(|e| e.path()) {
        if file.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let path = file.to_str().unwrap();
        let jsonpath = r#"-o=jsonpath={.status.conditions[?(@.type=="Established")].status}"#;
        let status = check(kubectl(["get", "-f", path, jsonpath]), "kubectl get crd");
        assert_eq!(status.trim(), "True", "{path} not Established");
    }
}

#[tokio::test]
async fn namespace_applied_by_kubectl_reads_back_with_kube_rs() {
    let name = "e2e-cluster-apply";
    let manifest = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n    ocelot.dev/test: apply-stdin\n"
    );
    check(
        kubectl_stdin(["apply", "-f", "-"], &manifest),
        "kubectl apply -f -",
    );

    let ns = Api::<Namespace>::all(cluster::client().await)
        .get(name)
        .await
        .unwrap();
    let labels = ns.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels.get("ocelot.dev/test").map(String::as_str),
        Some("apply-stdin")
    );
}

/// Waits for the first watcher event that `want` accepts, bounded by time and by event count.
async fn next_matching<K, S>(stream: &mut S, what: &str, want: impl Fn(&watcher::Event<K>) -> bool)
where
    K: std::fmt::Debug,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    for _ in 0..100 {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(event))) if want(&event) => return,
            Ok(Some(event)) => seen.push(format!("{event:?}")),
            Ok(None) => panic!("watch stream ended while waiting for {what}"),
            Err(_) => break,
        }
    }
    panic!("no {what} event within 30 s / 100 events; saw: {seen:#?}");
}

// multi_thread: kubectl runs block the calling thread, and the watch connection must keep being served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_sees_ippool_create_update_delete_made_by_kubectl() {
    let name = "e2e-cluster-watch";
    // An external cluster may keep one from an earlier run.
    check(
        kubectl(["delete", "ippool", name, "--ignore-not-found"]),
        "delete leftover",
    );

    let api: Api<IPPool> = Api::all(cluster::client().await);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(api, config).default_backoff().boxed();
    next_matching(&mut events, "initial list done", |e| {
        matches!(e, watcher::Event::InitDone)
    })
    .await;

    let pool = format!(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: {name}\nspec:\n  cidr: 198.19.240.0/24\n  blockSize: 28\n"
    );
    check(
        kubectl_stdin(["apply", "-f", "-"], &pool),
        "kubectl apply ippool",
    );
    next_matching(&mut events, "create", |e| {
        matches!(e, watcher::Event::Apply(p) if p.spec.cidr == "198.19.240.0/24" && !p.spec.disabled)
    })
    .await;

    check(
        kubectl([
            "patch",
            "ippool",
            name,
            "--type=merge",
            "-p",
            r#"{"spec":{"disabled":true}}"#,
        ]),
        "kubectl patch ippool",
    );
    next_matching(
        &mut events,
        "update",
        |e| matches!(e, watcher::Event::Apply(p) if p.spec.disabled),
    )
    .await;

    check(kubectl(["delete", "ippool", name]), "kubectl delete ippool");
    next_matching(
        &mut events,
        "delete",
        |e| matches!(e, watcher::Event::Delete(p) if p.metadata.name.as_deref() == Some(name)),
    )
    .await;
}

#[tokio::test]
async fn helm_installs_a_chart() {
    let chart = tempfile::tempdir().unwrap();
    let write = |path: &str, text: &str| {
        let path = chart.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "Chart.yaml",
        "apiVersion: v2\nname: e2e-cluster-chart\nversion: 0.1.0\n",
    );
    write(
        "templates/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n  answer: {{ .Values.answer | quote }}\n",
    );
    let chart_dir = chart.path().to_str().unwrap();
    // upgrade --install: an external cluster may keep the release from an earlier run.
    check(
        cluster::helm([
            "upgrade",
            "--install",
            "e2e-cluster-helm",
            chart_dir,
            "-n",
            "default",
            "--set",
            "answer=42",
        ]),
        "helm upgrade --install",
    );
    let cm = Api::<ConfigMap>::namespaced(cluster::client().await, "default")
        .get("e2e-cluster-helm")
        .await
        .unwrap();
    assert_eq!(
        cm.data
            .unwrap_or_default()
            .get("answer")
            .map(String::as_str),
        Some("42")
    );
    check(
        cluster::helm(["uninstall", "e2e-cluster-helm", "-n", "default"]),
        "helm uninstall",
    );
}

const CHILD_REPORT: &str = "OCELOT_E2E_CHILD_REPORT";
const CHILD_MODE: &str = "OCELOT_E2E_CHILD_MODE";

/// Only does something when run by `no_cluster_process_outlives_its_test_binary` as a child test binary:
/// starts the shared cluster, reports its pids and work dir, then ends the way the parent asked.
#[test]
fn child_starts_cluster_and_exits() {
    let Some(report) = std::env::var_os(CHILD_REPORT) else {
        return;
    };
    let c = cluster::shared();
    let pids: Vec<String> = c.pids().iter().map(u32::to_string).collect();
    std::fs::write(
        report,
        format!("{}\n{}\n", pids.join(" "), c.dir().display()),
    )
    .unwrap();
    if std::env::var(CHILD_MODE).as_deref() == Ok("abort") {
        std::process::abort(); // no atexit hook: only PR_SET_PDEATHSIG can clean up
    }
}

/// True while `pid` is a live process (a zombie has already died; pid 1 may be slow to reap it).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the ")" that closes the command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[test]
fn no_cluster_process_outlives_its_test_binary() {
    if std::env::var_os(CHILD_REPORT).is_some() {
        return; // we are the child
    }
    if std::env::var_os(cluster::KUBECONFIG_ENV).is_some() {
        eprintln!(
            "skipped: {} is set, so no cluster process is started",
            cluster::KUBECONFIG_ENV
        );
        return;
    }
    for mode in ["exit", "abort"] {
        let report = tempfile::NamedTempFile::new().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap());
        child
            .args([
                "--exact",
                "child_starts_cluster_and_exits",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_REPORT, report.path())
            .env(CHILD_MODE, mode);
        let out = ocelot_e2e::proc::run_output(&mut child, None, Duration::from_secs(300));
        let text = std::fs::read_to_string(report.path()).unwrap();
        let mut lines = text.lines();
        let pids: Vec<u32> = lines
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        assert_eq!(
            pids.len(),
            2,
            "child ({mode}) did not report etcd and kube-apiserver pids; status {}, stderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let dir = Path::new(lines.next().unwrap()).to_path_buf();
        assert_eq!(
            out.status.success(),
            mode == "exit",
            "child status {}",
            out.status
        );

        let start = Instant::now();
        for _ in 0..200 {
            if !pids.iter().any(|&p| alive(p)) || start.elapsed() > Duration::from_secs(20) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let left: Vec<u32> = pids.iter().copied().filter(|&p| alive(p)).collect();
        assert!(
            left.is_empty(),
            "after the child ({mode}) ended, processes {left:?} still run"
        );
        if mode == "exit" {
            assert!(
                !dir.exists(),
                "work dir {} left behind after a normal exit",
                dir.display()
            );
        } else {
            // An abort skips cleanup of files; the next cluster start sweeps such dirs, as this does now.
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
