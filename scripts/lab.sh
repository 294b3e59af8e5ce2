#!/usr/bin/env bash
# The main job: installs what is needed, then runs the seed lab live on this machine (needs root):
# real Kubernetes nodes, Ocelot installed with `helm install` from helm/ocelot on locally built images,
# and the seed's ten steps replayed and checked.
#   scripts/lab.sh          run it; exits non-zero at the first observation that differs from the seed
#   scripts/lab.sh --keep   leave the lab up afterwards (Ctrl-C stops it)
#   scripts/lab.sh down     remove what an interrupted run left (processes, mounts, namespaces, cgroups)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$OCELOT_ROOT"
if [ "${1:-}" != down ]; then "$OCELOT_ROOT/scripts/setup.sh"; fi
# The images are made from the workspace's binaries (operator, agent, CNI plugin, ocelotctl).
stage "build Ocelot and ocelot-lab" cargo build --quiet --locked --workspace --bins
"$CARGO_TARGET_DIR/debug/ocelot-lab" "$@"
