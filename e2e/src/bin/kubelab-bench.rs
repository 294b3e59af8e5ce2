//! `kubelab-bench [SECONDS]`: starts the seed's kube lab (control, node1, node2 + host1) with a 6-replica
//! nginx Deployment, prints the time to 3 Ready nodes, then the idle CPU and memory of every process of the
//! lab over SECONDS (default 60), read from /proc. Numbers for BENCHMARKS.md; needs root.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ocelot_e2e::kubelab::{KubeLab, NGINX_IMAGE};

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
      containers:
      - {name: nginx, image: IMAGE, imagePullPolicy: Never}
"#;

/// (utime + stime in clock ticks, RSS in KiB, short name) of a live process.
fn sample(pid: u32) -> Option<(u64, u64, String)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let name = stat[stat.find('(')? + 1..stat.rfind(')')?].to_string();
    let f: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Some((ticks, rss, name))
}

fn main() -> Result<()> {
    let secs: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()
        .context("SECONDS must be a number")?
        .unwrap_or(60);
    let t0 = Instant::now();
    let lab = KubeLab::start(&["control", "node1", "node2", "host1"])?;
    println!(
        "start to 3 Ready nodes: {:.1} s",
        lab.start_time().as_secs_f64()
    );
    lab.apply(&WEB.replace("IMAGE", NGINX_IMAGE))?;
    lab.wait(
        &["deployment/web", "--for=condition=Available"],
        Duration::from_secs(120),
    )?;
    println!(
        "+ 6 nginx replicas Available: {:.1} s after start",
        t0.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(10)); // let start-up work settle
    let label: BTreeMap<u32, String> = lab.daemon_pids().into_iter().map(|(n, p)| (p, n)).collect();
    let pids = lab.all_pids();
    let before: BTreeMap<u32, (u64, u64, String)> = pids
        .iter()
        .filter_map(|p| Some((*p, sample(*p)?)))
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let mut rows: BTreeMap<String, (f64, u64, usize)> = BTreeMap::new();
    for (pid, (t1, _, name)) in &before {
        let Some((t2, rss, _)) = sample(*pid) else {
            continue;
        };
        let key = label.get(pid).cloned().unwrap_or_else(|| name.clone());
        let row = rows.entry(key).or_default();
        row.0 += (t2 - t1) as f64 / hz / secs as f64 * 100.0;
        row.1 += rss;
        row.2 += 1;
    }
    println!(
        "\nidle over {secs} s (100 % = one core), {} processes:",
        before.len()
    );
    println!(
        "{:<32} {:>5} {:>9} {:>7}",
        "process", "count", "rss_MiB", "cpu_%"
    );
    let (mut cpu, mut rss) = (0.0, 0);
    for (name, (c, r, n)) in &rows {
        println!("{name:<32} {n:>5} {:>9.1} {c:>7.2}", *r as f64 / 1024.0);
        cpu += c;
        rss += r;
    }
    println!(
        "{:<32} {:>5} {:>9.1} {cpu:>7.2}",
        "TOTAL",
        before.len(),
        rss as f64 / 1024.0
    );
    Ok(())
}
