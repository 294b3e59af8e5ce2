//! Lab primitives against the real kernel. Need root (as CI runs) and scripts/setup.sh's tools.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use ocelot_e2e::lab::{
    self, Lab, Netns, RunId, cleanup_stale, find_tool, hold_stale_cleanup, process_start,
    require_root, require_tools,
};

fn preflight() {
    require_root().expect("lab tests need root");
    require_tools(&["ip", "ping", "setsid", "sh"]).expect("lab tests need their tools");
}

fn ip(args: &[&str]) -> String {
    let out = Command::new(find_tool("ip").expect("ip"))
        .args(args)
        .output()
        .expect("running ip");
    assert!(out.status.success(), "ip {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Everything on the machine that still carries `prefix`: netns, root-namespace links, and
/// live processes whose command line mentions it.
fn leftovers(prefix: &str) -> Vec<String> {
    let mut left: Vec<String> = ip(&["netns", "list"])
        .lines()
        .filter(|l| l.contains(prefix))
        .map(|l| format!("netns {l}"))
        .collect();
    left.extend(
        lab::root_links_with_prefix(&ip(&["-o", "link", "show"]), prefix)
            .into_iter()
            .map(|l| format!("link {l}")),
    );
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
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

/// Puts processes into the lab that only a thorough cleanup removes: one owned by a
/// `LabProcess` and one that escaped into its own session (like a daemonizing BIRD).
fn start_processes(lab: &Lab) -> (lab::LabProcess, Vec<u32>) {
    let marker = format!("{}-worker", lab.prefix());
    let worker = lab
        .node("node1")
        .spawn([
            "sh",
            "-c",
            "echo worker-up; while :; do sleep 1; done",
            &marker,
        ])
        .unwrap();
    worker
        .wait_for_log("worker-up", Duration::from_secs(10))
        .unwrap();
    assert_eq!(worker.log(), "worker-up\n", "the log holds the output only");
    assert!(
        std::fs::read_to_string(worker.log_path())
            .unwrap()
            .starts_with("# ")
    );
    let escapee = format!("{}-escapee", lab.prefix());
    lab.node("node2")
        .exec_ok(["setsid", "sh", "-c", "while :; do sleep 1; done", &escapee])
        .unwrap();
    let pids: Vec<u32> = lab
        .netns_names()
        .iter()
        .flat_map(|ns| lab::netns_pids(ns))
        .collect();
    assert!(pids.contains(&worker.pid()), "{pids:?}");
    assert!(
        lab::retry(
            "escapee running",
            50,
            Duration::from_secs(5),
            Duration::from_millis(50),
            || {
                let p = lab.node("node2").pids();
                anyhow::ensure!(!p.is_empty(), "no process in node2 yet");
                Ok(())
            }
        )
        .is_ok()
    );
    let pids = lab
        .netns_names()
        .iter()
        .flat_map(|ns| lab::netns_pids(ns))
        .collect();
    (worker, pids)
}

fn assert_all_gone(prefix: &str, pids: &[u32]) {
    let alive: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|p| process_start(*p).is_some())
        .collect();
    assert!(alive.is_empty(), "processes still alive: {alive:?}");
    let left = leftovers(prefix);
    assert!(left.is_empty(), "left behind by {prefix}: {left:#?}");
}

#[test]
fn seed_nodes_ping_each_other() {
    preflight();
    let lab = Lab::seed().unwrap();
    assert_eq!(lab.nodes().len(), 4);
    for a in lab.nodes() {
        assert!(a.name().len() <= 15 && lab.prefix().len() == 7);
        let routes = a.exec_ok(["ip", "route"]).unwrap();
        assert!(
            routes.contains(&format!("default via {} dev ens4", lab::FABRIC_GATEWAY)),
            "{}: {routes}",
            a.name()
        );
        assert_eq!(a.sysctl_get("net.ipv4.ip_forward").unwrap(), "1");
        a.sysctl("net/ipv4/conf/ens4/proxy_arp", "1").unwrap();
        assert_eq!(a.sysctl_get("net.ipv4.conf.ens4.proxy_arp").unwrap(), "1");
        for b in lab.nodes() {
            if a.name() != b.name() {
                a.ping(&b.ip().to_string(), 5)
                    .unwrap_or_else(|e| panic!("{} -> {}: {e:#}", a.name(), b.name()));
            }
        }
    }
    assert_eq!(lab.node("host1").ip().to_string(), "198.19.15.254");
}

#[test]
fn exec_ok_reports_output_on_failure() {
    preflight();
    let lab = Lab::new().unwrap();
    let err = lab
        .fabric()
        .exec_ok(["sh", "-c", "echo to-out; echo to-err >&2; exit 3"])
        .unwrap_err();
    let msg = format!("{err:#}");
    for want in ["to-out", "to-err", "exit status: 3", "fabric"] {
        assert!(msg.contains(want), "{want:?} missing from: {msg}");
    }
    let out = lab
        .fabric()
        .exec_timeout(["sleep", "30"], Duration::from_millis(300));
    assert!(out.is_err(), "exec must time out: {out:?}");
}

#[test]
fn drop_removes_netns_links_and_processes() {
    preflight();
    let lab = Lab::seed().unwrap();
    let prefix = lab.prefix().to_string();
    let dir = lab.dir().to_path_buf();
    let (worker, pids) = start_processes(&lab);
    // A handle that outlives the lab: the lab must still stop its process.
    let late = lab
        .node("control")
        .spawn([
            "sh",
            "-c",
            "while :; do sleep 1; done",
            &format!("{prefix}-late"),
        ])
        .unwrap();
    let late_pid = late.pid();
    assert!(late.is_running());
    drop(worker);
    drop(lab);
    assert!(!late.is_running(), "lab drop left pid {late_pid} running");
    drop(late);
    assert_all_gone(&prefix, &pids);
    assert!(!dir.exists(), "{} kept after a clean run", dir.display());
}

#[test]
fn panic_still_cleans_up() {
    preflight();
    let mut seen: Option<(String, Vec<u32>, PathBuf)> = None;
    let result = catch_unwind(AssertUnwindSafe(|| {
        let lab = Lab::seed().unwrap();
        let (_worker, pids) = start_processes(&lab);
        seen = Some((lab.prefix().to_string(), pids, lab.dir().to_path_buf()));
        panic!("deliberate panic inside a lab test");
    }));
    assert!(result.is_err());
    let (prefix, pids, dir) = seen.expect("lab was built before the panic");
    assert_all_gone(&prefix, &pids);
    // Logs are kept after a failure, for diagnosis.
    assert!(dir.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Deletes a netns this test made itself, even if an assertion fails.
struct ForeignNetns(String);
impl Drop for ForeignNetns {
    fn drop(&mut self) {
        let _ = Command::new(find_tool("ip").unwrap())
            .args(["netns", "delete", &self.0])
            .status();
    }
}

fn unused_pid() -> u32 {
    let max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(32768);
    (1..1000)
        .map(|k| max - k)
        .find(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
        .expect("a free pid near pid_max")
}

#[test]
fn stale_runs_are_removed_and_live_ones_kept() {
    preflight();
    let mut live = Lab::new().unwrap();
    live.add_node("node1", "198.19.0.2").unwrap();
    let me = RunId::new().unwrap();
    let dead = RunId {
        pid: unused_pid(),
        ..me.clone()
    };
    // Same pid as this process but another start time: a pid reused after a crash.
    let reused = RunId {
        start: me.start + 1,
        ..me.clone()
    };
    let dead_ns = dead.netns_name("node1");
    let reused_ns = reused.netns_name("node1");
    let foreign = ForeignNetns(format!("ocelot-foreign-{}", me.prefix));
    let marker = format!("{}-stale-proc", me.prefix);
    let stale_pids = {
        // Keep other tests' Lab::new from sweeping these before they are fully planted.
        let _hold = hold_stale_cleanup().unwrap();
        for ns in [&dead_ns, &reused_ns, &foreign.0] {
            ip(&["netns", "add", ns]);
        }
        // A leftover daemon in the dead run's netns.
        Netns::attach(&dead_ns)
            .exec_ok(["setsid", "sh", "-c", "while :; do sleep 1; done", &marker])
            .unwrap();
        let pids = lab::netns_pids(&dead_ns);
        assert!(!pids.is_empty());
        pids
    };

    cleanup_stale().unwrap();

    let listed = ip(&["netns", "list"]);
    let present = |ns: &str| {
        listed
            .lines()
            .any(|l| l.split_whitespace().next() == Some(ns))
    };
    assert!(!present(&dead_ns), "dead run's netns kept:\n{listed}");
    assert!(!present(&reused_ns), "reused pid's netns kept:\n{listed}");
    assert!(present(&foreign.0), "foreign netns removed:\n{listed}");
    for ns in live.netns_names() {
        assert!(present(&ns), "live lab's {ns} removed:\n{listed}");
    }
    assert!(
        stale_pids.iter().all(|p| process_start(*p).is_none()),
        "stale processes survived: {stale_pids:?}"
    );
    assert!(leftovers(&marker).is_empty());
    live.node("node1")
        .ping(&lab::FABRIC_GATEWAY.to_string(), 5)
        .unwrap();
}

const CRASH_ENV: &str = "OCELOT_E2E_CRASH_HELPER";

/// Only does something when started by `crashed_run_is_cleaned_up`: builds a lab with
/// processes and exits without running any destructor, as a killed test run would.
#[test]
fn crash_helper() {
    if std::env::var_os(CRASH_ENV).is_none() {
        return;
    }
    let lab = Lab::seed().unwrap();
    let (worker, _) = start_processes(&lab);
    // On its own line: the harness prints "test crash_helper ... " without a newline first.
    println!("\nCRASH-PREFIX={}", lab.prefix());
    println!("CRASH-DIR={}", lab.dir().display());
    std::mem::forget(worker);
    std::process::exit(17);
}

#[test]
fn crashed_run_is_cleaned_up() {
    preflight();
    let live = Lab::seed().unwrap();
    let prefix = {
        // Keep other tests' Lab::new from sweeping the crash's leftovers before we look.
        let _hold = hold_stale_cleanup().unwrap();
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_helper", "--nocapture", "--test-threads=1"])
            .env(CRASH_ENV, "1")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(17), "{out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let prefix = stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix("CRASH-PREFIX="))
            .unwrap_or_else(|| panic!("no prefix in {stdout}"))
            .to_string();
        let left = leftovers(&prefix);
        assert!(
            left.iter().filter(|l| l.starts_with("netns")).count() == 5
                && left.iter().any(|l| l.contains("-worker"))
                && left.iter().any(|l| l.contains("-escapee")),
            "the crash should have left 5 netns and 2 processes: {left:#?}"
        );
        // The crashed run's logs are kept for diagnosis; this one was deliberate.
        if let Some(dir) = stdout.lines().find_map(|l| l.strip_prefix("CRASH-DIR=")) {
            let _ = std::fs::remove_dir_all(dir);
        }
        prefix
    };
    cleanup_stale().unwrap();
    let left = leftovers(&prefix);
    assert!(left.is_empty(), "crash leftovers not removed: {left:#?}");
    for ns in live.netns_names() {
        assert!(
            std::path::Path::new(lab::NETNS_DIR).join(&ns).exists(),
            "{ns} removed"
        );
    }
    live.node("node1").ping("198.19.0.3", 5).unwrap();
}
