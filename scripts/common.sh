# Shared by scripts/*.sh: cache locations and stage timing. Sourced, not run.
set -euo pipefail
OCELOT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OCELOT_CACHE=${OCELOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ocelot}
# One target dir per user, shared by every clone, so a fresh clone reuses compiled dependencies.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$OCELOT_CACHE/target}
export OCELOT_CACHE OCELOT_ROOT
mkdir -p "$OCELOT_CACHE"

_t0=$(date +%s)
stage() { # stage NAME CMD... : run one stage, print its duration, stop with a clear message on failure
  local name=$1; shift
  local s; s=$(date +%s)
  printf '==> [%s] %s\n' "$(date +%H:%M:%S)" "$name"
  if "$@"; then
    printf '<== %s: ok in %ss (total %ss)\n' "$name" "$(( $(date +%s) - s ))" "$(( $(date +%s) - _t0 ))"
  else
    local rc=$?
    printf '<== %s: FAILED (exit %s) after %ss\n' "$name" "$rc" "$(( $(date +%s) - s ))" >&2
    exit "$rc"
  fi
}
