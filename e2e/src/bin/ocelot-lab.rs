//! `ocelot-lab`: the seed lab (`../shared/seed/000_315f55d3b5a24ff5.txt`) live on this machine: real
//! Kubernetes nodes, Ocelot installed with `helm install` on locally built images, and the seed's
//! ten steps replayed in order, stopping at the first observation that differs from the seed.
//!
//! Run it through `scripts/lab.sh` (it installs the test cluster binaries, BIRD and friends first).
//! `--keep` leaves everything up until Ctrl-C; `down` removes what a killed run left behind.
use std::time::Duration;

use anyhow::Result;
use ocelot_e2e::lab::cleanup_stale;
use ocelot_e2e::seed_live::{Progress, SeedLab, steps};

/// The start's three steps, then the seed's.
const TOTAL: usize = 3 + steps::STEPS;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "down") {
        match cleanup_stale() {
            Ok(removed) => println!(
                "RESULT: removed what earlier lab runs left ({} namespaces, with their processes, mounts and cgroups).",
                removed.len()
            ),
            Err(e) => {
                eprintln!("RESULT: FAILED to clean up: {e:#}");
                std::process::exit(1);
            }
        }
        return;
    }
    let keep = args.iter().any(|a| a == "--keep");
    match run(keep) {
        Ok(secs) => println!(
            "\nRESULT: all {} seed steps observed as in the seed, in {secs:.0}s.",
            steps::STEPS
        ),
        Err(e) => {
            eprintln!("\nRESULT: FAILED: {e:#}");
            eprintln!(
                "The kube lab's daemon logs are in the run folder named above (kept on failure); fix the cause and rerun `scripts/lab.sh`."
            );
            std::process::exit(1);
        }
    }
}

fn run(keep: bool) -> Result<f64> {
    let mut p = Progress::new(TOTAL);
    let mut lab = SeedLab::start(&mut p)?;
    let result = steps::replay(&lab, &mut p);
    if result.is_err() {
        lab.kube.keep_logs();
        eprintln!("{}", lab.pod_diagnostics());
    }
    let _router = result?;
    for (what, t) in &lab.timings {
        println!("{what}: {:.1}s", t.as_secs_f64());
    }
    if keep {
        println!(
            "\n--keep: the lab stays up. kubectl: nsenter --net={} {} --kubeconfig {} get pods -A ; Ctrl-C stops it; `scripts/lab.sh down` then removes what is left.",
            lab.kube.control().netns().path().display(),
            ocelot_e2e::cluster::binary("kubectl")?.display(),
            lab.kube.admin_kubeconfig().display()
        );
        std::thread::sleep(Duration::from_secs(24 * 3600));
    }
    Ok(p.elapsed().as_secs_f64())
}
