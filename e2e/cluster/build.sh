#!/usr/bin/env bash
# Builds the test cluster's binaries (etcd, kube-apiserver, kubectl, helm) from their Go modules, pinned by
# go.mod/go.sum here, into $OCELOT_CACHE/k8s-<version>/bin. A stamp keyed by a hash of the inputs makes a
# second run with nothing changed return at once without starting the Go compiler.
# The Rust harness (e2e/src/cluster.rs) looks for the binaries in the same folder (or $OCELOT_K8S_BIN).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"

K8S_VERSION=v1.37.2 # keep in step with go.mod (k8s.io/kubernetes) and K8S_VERSION in e2e/src/cluster.rs
OCELOT_CACHE=${OCELOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ocelot}
bin=${OCELOT_K8S_BIN:-$OCELOT_CACHE/k8s-$K8S_VERSION/bin}

# go.mod says go 1.26; the machine's Go is enough, and "local" stops a silent toolchain download.
export PATH=$PATH:/usr/local/go/bin
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
# Pure-Go static binaries: no C toolchain needed, and as upstream releases kube-apiserver.
export CGO_ENABLED=0
# go.sum is committed: the build must never rewrite go.mod/go.sum.
export GOFLAGS="${GOFLAGS:-} -mod=readonly"

fail() { printf 'e2e/cluster/build.sh: %s\n' "$*" >&2; exit 1; }
command -v go >/dev/null || fail "no 'go' on PATH (nor /usr/local/go/bin). Install Go >= 1.26 (Debian: see scripts/setup.sh) and rerun."
grep -q "k8s.io/kubernetes $K8S_VERSION" go.mod || fail "go.mod does not require k8s.io/kubernetes $K8S_VERSION; update K8S_VERSION here and in e2e/src/cluster.rs, or rerun update.sh."

# Name -> Go package. kube-apiserver and helm are the upstream main packages (pinned with `tool` in go.mod);
# etcd and kubectl are three-line mains in cmd/ that call the upstream packages.
names=(etcd kubectl helm kube-apiserver)
declare -A pkg=(
  [etcd]=./cmd/etcd
  [kubectl]=./cmd/kubectl
  [helm]=helm.sh/helm/v4/cmd/helm
  [kube-apiserver]=k8s.io/kubernetes/cmd/kube-apiserver
)

stamp=$bin/.stamp
key=$( { cat go.mod go.sum build.sh; find cmd -name '*.go' -type f | LC_ALL=C sort | xargs cat; go env GOVERSION GOOS GOARCH; } | sha256sum | cut -d' ' -f1)
all_present() { local n; for n in "${names[@]}"; do [ -x "$bin/$n" ] || return 1; done; }
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ] && all_present; then
  echo "test cluster binaries up to date in $bin"
  exit 0
fi

mkdir -p "$bin"
rm -f "$stamp"
t0=$(date +%s)
for n in "${names[@]}"; do
  s=$(date +%s)
  printf '  building %-15s (%s) ...\n' "$n" "${pkg[$n]}"
  # Build to a temporary name and rename, so an interrupted build never leaves a half-written binary.
  if ! go build -trimpath -ldflags="-s -w" -o "$bin/.$n.tmp" "${pkg[$n]}"; then
    rm -f "$bin/.$n.tmp"
    fail "building $n from ${pkg[$n]} failed after $(( $(date +%s) - s ))s (see the go errors above). If a module could not be downloaded, check that the Go module proxy is reachable (go env GOPROXY); if go.sum is missing an entry, run e2e/cluster/update.sh and commit go.mod and go.sum."
  fi
  mv -f "$bin/.$n.tmp" "$bin/$n"
  printf '  built    %-15s in %ss\n' "$n" "$(( $(date +%s) - s ))"
done
echo "$key" > "$stamp"
echo "test cluster binaries built in $(( $(date +%s) - t0 ))s into $bin"
