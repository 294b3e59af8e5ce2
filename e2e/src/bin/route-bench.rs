//! Route programming benchmark (design.md: "applying 10,000 routes within 1.2x of `ip -batch` on
//! the same machine, same run"). Needs root.
//!
//! In a fresh lab netns with a veth, alternately times
//! (a) `ip -n <netns> -batch <file>` adding N `/32 dev rt0 scope link` routes (whole process), and
//! (b) the agent's `RouteNetlink::apply` of the same N routes (socket already open, as in the
//!     running agent), plus the agent's whole reconcile (list + plan + apply) for reference,
//! flushing between runs, and prints medians and the ratio.
//!
//! `route-bench [--routes N] [--runs R]` (defaults 10000 and 7).

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use ocelot::routes::{OCELOT_PROTOCOL, Ownership, RT_TABLE_MAIN, Route, plan};
use ocelot_agent::routes::{APPLY_CONCURRENCY, RouteNetlink};
use ocelot_e2e::lab::{Lab, Netns, find_tool, require_root, require_tools};

const DEV: &str = "rt0";

fn main() -> Result<()> {
    let mut routes = 10_000u32;
    let mut runs = 7usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().context("option without value")?;
        match arg.as_str() {
            "--routes" => routes = value.parse()?,
            "--runs" => runs = value.parse()?,
            _ => bail!("usage: route-bench [--routes N] [--runs R]"),
        }
    }
    ensure!(routes > 0 && routes < 1 << 20 && runs > 0, "bad sizes");
    require_root()?;
    require_tools(&["ip"])?;
    // A multi-threaded runtime, as the agent's: the route socket brings its own thread.
    tokio::runtime::Runtime::new()?.block_on(bench(routes, runs))
}

async fn bench(n: u32, runs: usize) -> Result<()> {
    let mut lab = Lab::new()?;
    let ns = lab.add_netns("rtbench")?;
    for args in [
        vec![
            "ip", "link", "add", DEV, "type", "veth", "peer", "name", "rt1",
        ],
        vec!["ip", "link", "set", DEV, "up"],
        vec!["ip", "link", "set", "rt1", "up"],
        vec!["ip", "addr", "add", "192.0.2.1/24", "dev", DEV],
    ] {
        ns.exec_ok(args)?;
    }
    let base = u32::from(Ipv4Addr::new(10, 0, 0, 0));
    let desired: Vec<Route> = (1..=n)
        .map(|i| Route::pod(Ipv4Addr::from(base + i), DEV))
        .collect();
    // The same routes for ip: same protocol, so both runs leave identical tables.
    let mut batch = String::with_capacity(n as usize * 60);
    for r in &desired {
        writeln!(
            batch,
            "route add {} dev {DEV} scope link proto {OCELOT_PROTOCOL}",
            r.dst
        )?;
    }
    let batch_file = lab.dir().join("routes.batch");
    std::fs::write(&batch_file, batch)?;
    let ip = find_tool("ip").context("ip")?;

    let nl = RouteNetlink::connect_in_netns(&ns.path())?;
    let empty = nl.list(RT_TABLE_MAIN).await?;
    let the_plan = plan(&desired, &empty, &Ownership::default());
    ensure!(the_plan.add.len() == n as usize);

    let (mut ip_times, mut apply_times, mut reconcile_times) = (vec![], vec![], vec![]);
    for run in 0..runs {
        // Alternate which goes first, so drift in the machine's load hits both alike.
        for which in if run % 2 == 0 { [0, 1, 2] } else { [2, 1, 0] } {
            flush(&ns)?;
            let t = Instant::now();
            match which {
                0 => {
                    let out = std::process::Command::new(&ip)
                        .args(["-n", ns.name(), "-batch"])
                        .arg(&batch_file)
                        .output()?;
                    ensure!(out.status.success(), "ip -batch: {out:?}");
                    ip_times.push(t.elapsed());
                }
                1 => {
                    let report = nl.apply(&the_plan).await;
                    apply_times.push(t.elapsed());
                    ensure!(report.is_ok(), "apply: {:?}", &report.failures[..1]);
                }
                _ => {
                    let current = nl.list(RT_TABLE_MAIN).await?;
                    let p = plan(&desired, &current, &Ownership::default());
                    let report = nl.apply(&p).await;
                    reconcile_times.push(t.elapsed());
                    ensure!(report.is_ok() && report.added == n as usize, "reconcile");
                }
            }
            let installed = ns
                .exec_ok(["ip", "route", "show", "proto", &OCELOT_PROTOCOL.to_string()])?
                .lines()
                .count();
            ensure!(
                installed == n as usize,
                "{installed} routes installed, want {n}"
            );
        }
    }
    let (ip_m, apply_m, rec_m) = (
        median(&mut ip_times),
        median(&mut apply_times),
        median(&mut reconcile_times),
    );
    println!(
        "{n} routes, {runs} runs each, alternating; agent concurrency {APPLY_CONCURRENCY}; \
         times in ms (median [min..max])"
    );
    for (name, m, all) in [
        ("ip -batch (whole process)", ip_m, &ip_times),
        ("agent apply", apply_m, &apply_times),
        ("agent list+plan+apply", rec_m, &reconcile_times),
    ] {
        println!(
            "  {name:<28} {:>8.1}  [{:.1}..{:.1}]",
            ms(m),
            ms(*all.first().unwrap()),
            ms(*all.last().unwrap())
        );
    }
    println!(
        "ratio agent apply / ip -batch: {:.2}; list+plan+apply / ip -batch: {:.2} (target <= 1.2)",
        ms(apply_m) / ms(ip_m),
        ms(rec_m) / ms(ip_m)
    );
    Ok(())
}

fn flush(ns: &Netns) -> Result<()> {
    ns.exec_ok([
        "ip",
        "route",
        "flush",
        "proto",
        &OCELOT_PROTOCOL.to_string(),
    ])?;
    Ok(())
}

/// Sorts `times` and returns the median.
fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
