//! `ocelotctl`: see the library for the commands.
fn main() -> std::process::ExitCode {
    ocelot_ctl::main()
}
