#!/usr/bin/env bash
# Runs every test: installs what is missing, then fmt, clippy -D warnings, and the whole workspace's tests
# (unit, property, CRD freshness, and e2e tests against a real kube-apiserver and network namespaces).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$OCELOT_ROOT"
"$OCELOT_ROOT/scripts/setup.sh"
stage "cargo fmt --check" cargo fmt --all -- --check
stage "cargo clippy -D warnings" cargo clippy --workspace --all-targets --locked -- -D warnings
# The e2e tests run the daemons and plugins as programs: build every binary first (`cargo test`
# builds a package's binaries only when that package has integration tests of its own).
stage "cargo build --workspace --bins" cargo build --workspace --bins --locked
stage "cargo test --workspace" cargo test --workspace --locked
echo "all tests passed in $(( $(date +%s) - _t0 ))s"
