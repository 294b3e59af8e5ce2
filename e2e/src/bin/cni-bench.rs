//! CNI ADD benchmark (issue: p50 ≤ 15 ms, p99 ≤ 100 ms with the agent warm; API writes per pod
//! ≤ 0.1 in a burst; agent RSS). Needs root. On one lab node with the operator and the agent
//! against the test cluster, measures in the same run:
//! - baseline: the bare pod plumbing done with `ip` commands (veth into the sandbox, address,
//!   the two pod routes, host /32 route), per pod;
//! - `ocelot-cni ADD` run as a runtime runs it, 200 sequential (in rounds of 50, each followed by
//!   DEL, so the node's blocks suffice) and 100 concurrent;
//! - the API server's mutating requests during the 100-pod burst, per pod;
//! - the agent's RSS idle and after the burst.
//!
//! `cni-bench` (release build recommended: `cargo run --release -p ocelot-e2e --bin cni-bench`).
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use ocelot_e2e::agent::{AgentLab, CniEnv, SEED_NODES, cni};
use ocelot_e2e::cluster::kubectl_stdin;
use ocelot_e2e::lab::{Netns, require_root};
use ocelot_e2e::operator::{api_writes_except, namespace};

const NS: &str = "bench";
const ROUND: usize = 50;
const SEQUENTIAL: usize = 200;
const BURST: usize = 100;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i]
}

fn summary(name: &str, samples: &mut [Duration]) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "{name}: n={} p50={:.1} ms p99={:.1} ms max={:.1} ms",
        samples.len(),
        ms(percentile(samples, 0.5)),
        ms(percentile(samples, 0.99)),
        ms(percentile(samples, 1.0)),
    ) + &format!(
        " mean={:.1} ms",
        ms(samples.iter().sum::<Duration>() / samples.len().max(1) as u32)
    )
}

/// The agent's ADD histogram: cumulative counts per upper bound (seconds), from /metrics.
fn add_buckets(agent: &mut ocelot_e2e::daemon::Daemon) -> Vec<(f64, u64)> {
    let (_, text) = agent.http_get("/metrics");
    text.lines()
        .filter_map(|l| l.strip_prefix("ocelot_agent_cni_add_duration_seconds_bucket{le=\""))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect()
}

/// The bucket bound under which a fraction `q` of the ADDs between two readings fell: the
/// agent's own time (request in to answer out), without the plugin's exec.
fn agent_quantile(before: &[(f64, u64)], after: &[(f64, u64)], q: f64) -> String {
    let total = after.last().map_or(0, |a| a.1) - before.last().map_or(0, |b| b.1);
    for ((le, a), (_, b)) in after.iter().zip(before) {
        if (a - b) as f64 >= q * total as f64 {
            return format!("≤ {:.1} ms", le * 1e3);
        }
    }
    "n/a".into()
}

/// Mutating requests by (resource, verb), from the API server's metrics.
fn writes_by_resource() -> std::collections::BTreeMap<String, f64> {
    let field = |l: &str, k: &str| -> String {
        l.split(&format!("{k}=\""))
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("")
            .to_string()
    };
    let mut out = std::collections::BTreeMap::new();
    for l in ocelot_e2e::operator::write_lines(&["events"]) {
        let n: f64 = l
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        *out.entry(format!("{} {}", field(&l, "resource"), field(&l, "verb")))
            .or_insert(0.0) += n;
    }
    out
}

/// A histogram's (count, total seconds) from the agent's /metrics.
fn agent_sum(agent: &mut ocelot_e2e::daemon::Daemon, name: &str) -> (f64, f64) {
    let (_, text) = agent.http_get("/metrics");
    let pick = |suffix: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("ocelot_agent_{name}_{suffix} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    (pick("count"), pick("sum"))
}

/// Mean milliseconds between two (count, sum) readings.
fn mean_ms(before: (f64, f64), after: (f64, f64)) -> f64 {
    (after.1 - before.1) / (after.0 - before.0).max(1.0) * 1e3
}

/// The API server's (count, total seconds) of IPAMBlock PUTs, from its request-duration metric.
fn block_put_seconds() -> (f64, f64) {
    let out = ocelot_e2e::cluster::kubectl(["get", "--raw", "/metrics"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let pick = |name: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter(|l| l.contains("resource=\"ipamblocks\"") && l.contains("verb=\"PUT\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    (
        pick("apiserver_request_duration_seconds_count{"),
        pick("apiserver_request_duration_seconds_sum{"),
    )
}

/// CPU seconds (user + system) used so far by the processes named `comm`.
fn cpu_seconds(comm: &str) -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let dir = entry.path();
        if std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim() == comm) {
            let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
            // Fields after the command's closing parenthesis: utime and stime are 12th and 13th.
            let rest = stat.rsplit_once(')').map_or("", |r| r.1);
            let f: Vec<&str> = rest.split_whitespace().collect();
            let n = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            total += (n(11) + n(12)) / tick;
        }
    }
    total
}

const BUSY: [&str; 4] = ["kube-apiserver", "etcd", "ocelot-operator", "ocelot-agent"];

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn pods_yaml(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {n}\n  namespace: {NS}\nspec:\n  nodeName: node1\n  containers:\n  - name: c\n    image: busybox\n---\n"
        ))
        .collect()
}

/// The bare plumbing of one pod with `ip`, timed as a whole.
fn baseline(node: &Netns, pod: &Netns, i: usize) -> Result<Duration> {
    let veth = format!("bl{i}");
    let ip = format!("198.19.30.{}", i % 250 + 1);
    let podns = pod.name().to_string();
    let t = Instant::now();
    node.exec_ok([
        "ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &podns,
    ])?;
    pod.exec_ok(["ip", "addr", "add", &format!("{ip}/32"), "dev", "eth0"])?;
    pod.exec_ok(["ip", "link", "set", "eth0", "up"])?;
    pod.exec_ok([
        "ip",
        "route",
        "add",
        "169.254.1.1",
        "dev",
        "eth0",
        "scope",
        "link",
    ])?;
    pod.exec_ok([
        "ip",
        "route",
        "add",
        "default",
        "via",
        "169.254.1.1",
        "dev",
        "eth0",
    ])?;
    node.exec_ok(["ip", "link", "set", &veth, "up"])?;
    node.exec_ok([
        "ip",
        "route",
        "add",
        &format!("{ip}/32"),
        "dev",
        &veth,
        "scope",
        "link",
    ])?;
    let d = t.elapsed();
    node.exec_ok(["ip", "link", "del", &veth])?;
    Ok(d)
}

fn main() -> Result<()> {
    require_root()?;
    let t0 = Instant::now();
    let mut s = AgentLab::start(&SEED_NODES[..1], &[]);
    namespace(NS);
    let names: Vec<String> = (0..SEQUENTIAL.max(BURST))
        .map(|i| format!("p{i}"))
        .collect();
    let out = kubectl_stdin(["apply", "-f", "-"], &pods_yaml(&names));
    ensure!(
        out.status.success(),
        "create pods: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sandboxes: Vec<Netns> = (0..names.len())
        .map(|i| s.lab.add_netns(&format!("b{i}")))
        .collect::<Result<_>>()?;
    let node = s.lab.node("node1").clone();
    let conf = s.agent("node1").conf();
    let env = |cmd: &str, i: usize| {
        CniEnv::pod(
            cmd,
            &format!("bench{i:04}"),
            &sandboxes[i].path(),
            NS,
            &names[i],
        )
    };
    let add = |i: usize| -> Duration {
        let t = Instant::now();
        let out = cni(&env("ADD", i), &conf);
        let d = t.elapsed();
        assert_eq!(out.exit, 0, "ADD {i}: {out:?}");
        d
    };
    let del = |i: usize| {
        let out = cni(&env("DEL", i), &conf);
        assert_eq!(out.exit, 0, "DEL {i}: {out:?}");
    };
    eprintln!(
        "[{:>5.1}s] lab, operator and agent up; warming up ({BURST} ADD + DEL)",
        t0.elapsed().as_secs_f64()
    );
    // Warm-up: the node claims the blocks the burst needs; then everything is released again.
    for i in 0..BURST {
        add(i);
    }
    for i in 0..BURST {
        del(i);
    }
    let idle_rss = rss_kib(s.agent("node1").daemon.pid());

    eprintln!(
        "[{:>5.1}s] baseline: {SEQUENTIAL} pods with ip commands",
        t0.elapsed().as_secs_f64()
    );
    let mut base = Vec::new();
    for (i, sandbox) in sandboxes.iter().enumerate().take(SEQUENTIAL) {
        base.push(baseline(&node, sandbox, i)?);
    }
    eprintln!(
        "[{:>5.1}s] {SEQUENTIAL} sequential ADDs",
        t0.elapsed().as_secs_f64()
    );
    let mut seq = Vec::new();
    let hist_before = add_buckets(&mut s.agent("node1").daemon);
    let add_before = agent_sum(&mut s.agent("node1").daemon, "cni_add_duration_seconds");
    let put_before = block_put_seconds();
    let agent_phases = |s: &mut AgentLab| {
        let d = &mut s.agent("node1").daemon;
        (
            agent_sum(d, "pod_interfaces_duration_seconds"),
            agent_sum(d, "ipam_commit_duration_seconds"),
        )
    };
    let phases_before = agent_phases(&mut s);
    let cpu_before: Vec<f64> = BUSY.iter().map(|c| cpu_seconds(c)).collect();
    let seq_started = Instant::now();
    for round in 0..SEQUENTIAL / ROUND {
        let ids: Vec<usize> = (round * ROUND..(round + 1) * ROUND).collect();
        for &i in &ids {
            seq.push(add(i));
        }
        for &i in &ids {
            del(i);
        }
    }
    let hist_after = add_buckets(&mut s.agent("node1").daemon);
    let add_mean = mean_ms(
        add_before,
        agent_sum(&mut s.agent("node1").daemon, "cni_add_duration_seconds"),
    );
    let put_after = block_put_seconds();
    let phases_after = agent_phases(&mut s);
    let seq_wall = seq_started.elapsed().as_secs_f64();
    let cpu: Vec<String> = BUSY
        .iter()
        .zip(&cpu_before)
        .map(|(c, b)| format!("{c} {:.2} s", cpu_seconds(c) - b))
        .collect();
    // The plugin's own floor: exec, config parse, socket round trip, with no work behind it.
    let mut status = Vec::new();
    for _ in 0..SEQUENTIAL {
        let t = Instant::now();
        let out = cni(&CniEnv::status(), &conf);
        status.push(t.elapsed());
        ensure!(out.exit == 0, "STATUS: {out:?}");
    }
    eprintln!(
        "[{:>5.1}s] {BURST} concurrent ADDs",
        t0.elapsed().as_secs_f64()
    );
    let writes_before = api_writes_except(&["events"]);
    let by_before = writes_by_resource();
    let mut burst: Vec<Duration> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..BURST).map(|i| sc.spawn(move || add(i))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // The status write that follows the burst counts too.
    std::thread::sleep(Duration::from_secs(2));
    let writes = api_writes_except(&["events"]) - writes_before;
    let by: Vec<String> = writes_by_resource()
        .into_iter()
        .filter_map(|(k, v)| {
            let d = v - by_before.get(&k).copied().unwrap_or(0.0);
            (d > 0.0).then(|| format!("{k}: {d}"))
        })
        .collect();
    let burst_rss = rss_kib(s.agent("node1").daemon.pid());
    // The machine's floor for 100 plugin runs at once: the same concurrency with no IPAM or
    // interfaces behind it (STATUS), and bare process starts (/bin/true).
    let at_once = |f: &(dyn Fn() -> Duration + Sync)| -> Vec<Duration> {
        std::thread::scope(|sc| {
            let handles: Vec<_> = (0..BURST).map(|_| sc.spawn(f)).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    };
    let mut status_burst = at_once(&|| {
        let t = Instant::now();
        let out = cni(&CniEnv::status(), &conf);
        assert_eq!(out.exit, 0, "STATUS: {out:?}");
        t.elapsed()
    });
    // The kernel's part: 100 veth pairs (peer in a sandbox, as an ADD makes them) in one
    // `ip -batch`, so no process start or API call is in it.
    let batch = |verb: &dyn Fn(usize) -> String| -> Result<Duration> {
        let file = s.dir.path().join("veth-floor.batch");
        let lines: Vec<String> = (0..BURST).map(verb).collect();
        std::fs::write(&file, lines.join("\n") + "\n")?;
        let t = Instant::now();
        node.exec_ok(["ip", "-batch", &file.display().to_string()])?;
        Ok(t.elapsed())
    };
    let veth_floor = batch(&|i| {
        format!(
            "link add fl{i} type veth peer name fl0 netns {}",
            sandboxes[i].name()
        )
    })?;
    batch(&|i| format!("link del fl{i}"))?;
    let mut true_burst = at_once(&|| {
        let t = Instant::now();
        let ok = std::process::Command::new("/bin/true")
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "/bin/true failed");
        t.elapsed()
    });
    println!("{}", summary("baseline (ip commands)", &mut base));
    println!("{}", summary("plugin round trip (STATUS)", &mut status));
    println!("{}", summary("ADD sequential", &mut seq));
    println!(
        "ADD sequential, agent's own part (histogram bucket bounds): p50 {} p99 {}",
        agent_quantile(&hist_before, &hist_after, 0.5),
        agent_quantile(&hist_before, &hist_after, 0.99)
    );
    let puts = put_after.0 - put_before.0;
    println!(
        "  IPAMBlock PUTs meanwhile: {puts} (mean {:.1} ms in the API server)",
        (put_after.1 - put_before.1) / puts.max(1.0) * 1e3
    );
    println!(
        "  agent phases (means): ADD in the agent {add_mean:.1} ms; made at once: interfaces {:.1} ms, group commit {:.1} ms",
        mean_ms(phases_before.0, phases_after.0),
        mean_ms(phases_before.1, phases_after.1)
    );
    println!(
        "  CPU during the sequential phase ({seq_wall:.1} s wall, {SEQUENTIAL} ADD + {SEQUENTIAL} DEL): {}",
        cpu.join(", ")
    );
    println!("{}", summary("ADD concurrent", &mut burst));
    println!(
        "{}",
        summary("  floor: STATUS concurrent", &mut status_burst)
    );
    println!(
        "{}",
        summary("  floor: /bin/true concurrent", &mut true_burst)
    );
    println!(
        "  floor: {BURST} veth pairs in one ip -batch: {:.1} ms",
        veth_floor.as_secs_f64() * 1e3
    );
    println!(
        "API writes during the {BURST}-pod burst: {writes} ({:.2} per pod)",
        writes as f64 / BURST as f64
    );
    println!("  by resource and verb: {}", by.join(", "));
    println!(
        "agent RSS: idle {} KiB, after the burst {} KiB",
        idle_rss, burst_rss
    );
    println!("done in {:.1}s", t0.elapsed().as_secs_f64());
    Ok(())
}
