//! The binary's command line. Also makes `cargo test --workspace` build `target/<profile>/ocelot-operator`,
//! which the e2e test `e2e/tests/operator.rs` runs against the test API server.
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ocelot-operator");

#[test]
fn help_lists_the_flags_with_their_env_fallbacks() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for want in [
        "--kubeconfig",
        "KUBECONFIG",
        "--metrics-addr",
        "OCELOT_METRICS_ADDR",
    ] {
        assert!(help.contains(want), "{want} missing in\n{help}");
    }
}

#[test]
fn unreadable_kubeconfig_is_an_error_naming_the_file() {
    let out = Command::new(BIN)
        .args(["--kubeconfig", "/nonexistent/ocelot-kubeconfig"])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "must fail without a readable kubeconfig"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/ocelot-kubeconfig"), "{err}");
}
