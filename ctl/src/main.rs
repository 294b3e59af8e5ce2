//! `ocelotctl` (also `kubectl-ocelot`): node status, IPAM show/check/release, validate, plan.
use clap::Parser;

/// Ocelot command-line tool.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {}

fn main() {
    let _args = Args::parse();
}
