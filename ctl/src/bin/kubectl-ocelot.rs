//! `kubectl-ocelot`: `ocelotctl` under the name kubectl's plugin lookup wants, so `kubectl ocelot …`
//! runs it.
fn main() -> std::process::ExitCode {
    ocelot_ctl::main()
}
