//! The main job as a test: the seed lab live (real kubelets, `helm install` of helm/ocelot on locally
//! built images) with every observation of the seed's ten steps asserted by
//! `ocelot_e2e::seed_live::steps` (the code `scripts/lab.sh` runs). Needs root and what
//! scripts/setup.sh installs, as CI has.
use ocelot_e2e::seed_live::{Progress, SeedLab, steps};

#[test]
fn the_seed_replays_live_after_helm_install() {
    let mut p = Progress::new(3 + steps::STEPS);
    let mut lab = SeedLab::start(&mut p).unwrap_or_else(|e| panic!("start: {e:#}"));
    let result = steps::replay(&lab, &mut p);
    if let Err(e) = &result {
        lab.kube.keep_logs();
        panic!(
            "seed replay: {e:#}\nlogs kept in {}\n{}",
            lab.kube.dir().display(),
            lab.pod_diagnostics()
        );
    }
    for (what, t) in &lab.timings {
        eprintln!("{what}: {:.1}s", t.as_secs_f64());
    }
    eprintln!("whole replay: {:.1}s", p.elapsed().as_secs_f64());
}
