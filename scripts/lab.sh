#!/usr/bin/env bash
# The main job: installs what is needed, then replays the seed lab on this machine (needs root).
# Pass --keep to leave the API server and the node namespaces up for exploring (Ctrl-C stops them).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$OCELOT_ROOT"
"$OCELOT_ROOT/scripts/setup.sh"
stage "build ocelot-lab" cargo build --quiet --locked -p ocelot-e2e --bin ocelot-lab
"$CARGO_TARGET_DIR/debug/ocelot-lab" "$@"
