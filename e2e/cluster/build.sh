#!/usr/bin/env bash
# Builds the test cluster's binaries from their Go modules into $OCELOT_CACHE/k8s-<version>/bin:
# - from this folder's module (go.mod/go.sum): etcd, kubectl, helm, kube-apiserver, kubelet, kube-scheduler,
#   kube-controller-manager;
# - from containerd/ (a module of its own): containerd, ctr, containerd-shim-runc-v2.
# One stamp per module, keyed by a hash of its inputs, makes a second run with nothing changed return at once
# without starting the Go compiler. The Rust harness (e2e/src/cluster.rs, e2e/src/kubelab) looks for the
# binaries in the same folder (or $OCELOT_K8S_BIN).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"

K8S_VERSION=v1.37.2 # keep in step with go.mod (k8s.io/kubernetes) and K8S_VERSION in e2e/src/cluster.rs
CONTAINERD_VERSION=v2.4.2 # keep in step with containerd/go.mod
OCELOT_CACHE=${OCELOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ocelot}
bin=${OCELOT_K8S_BIN:-$OCELOT_CACHE/k8s-$K8S_VERSION/bin}

# go.mod says go 1.26; the machine's Go is enough, and "local" stops a silent toolchain download.
export PATH=$PATH:/usr/local/go/bin
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
# Pure-Go static binaries: no C toolchain needed, and as upstream releases them.
export CGO_ENABLED=0
# go.sum is committed: the build must never rewrite go.mod/go.sum.
export GOFLAGS="${GOFLAGS:-} -mod=readonly"

fail() { printf 'e2e/cluster/build.sh: %s\n' "$*" >&2; exit 1; }
command -v go >/dev/null || fail "no 'go' on PATH (nor /usr/local/go/bin). Install Go >= 1.26 (Debian: see scripts/setup.sh) and rerun."
grep -q "k8s.io/kubernetes $K8S_VERSION" go.mod || fail "go.mod does not require k8s.io/kubernetes $K8S_VERSION; update K8S_VERSION here and in e2e/src/cluster.rs, or rerun update.sh."
grep -q "github.com/containerd/containerd/v2 $CONTAINERD_VERSION" containerd/go.mod || fail "containerd/go.mod does not require containerd $CONTAINERD_VERSION"

# Without these the k8s binaries report v0.0.0-master+$Format:%H$ (nodes' kubeletVersion, helm's KubeVersion).
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
kver="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
kver="$kver -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"

# Name -> Go package. kube-apiserver, kubelet, kube-scheduler, kube-controller-manager and helm are the
# upstream main packages (pinned with `tool` in go.mod); etcd and kubectl are three-line mains in cmd/.
k8s_names=(etcd kubectl helm kube-apiserver kubelet kube-scheduler kube-controller-manager)
containerd_names=(containerd ctr containerd-shim-runc-v2)
declare -A pkg=(
  [etcd]=./cmd/etcd
  [kubectl]=./cmd/kubectl
  [helm]=helm.sh/helm/v4/cmd/helm
  [kube-apiserver]=k8s.io/kubernetes/cmd/kube-apiserver
  [kubelet]=k8s.io/kubernetes/cmd/kubelet
  [kube-scheduler]=k8s.io/kubernetes/cmd/kube-scheduler
  [kube-controller-manager]=k8s.io/kubernetes/cmd/kube-controller-manager
  [containerd]=github.com/containerd/containerd/v2/cmd/containerd
  [ctr]=github.com/containerd/containerd/v2/cmd/ctr
  [containerd-shim-runc-v2]=github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2
)
declare -A flags=(
  [kubectl]=$kver [kube-apiserver]=$kver [kubelet]=$kver [kube-scheduler]=$kver [kube-controller-manager]=$kver
)
# containerd: no cgo; the graph drivers left out need cgo or tools the lab does not use (as upstream's
# static builds do); the version string is what `ctr version` and the node's containerRuntimeVersion show.
ctr_tags="no_btrfs no_devmapper no_zfs no_aufs"
ctr_ldflags="-X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION"

mkdir -p "$bin"
t0=$(date +%s)
# build_group LABEL DIR TAGS EXTRA_LDFLAGS NAMES...: builds NAMES from the module in DIR unless its stamp is fresh.
build_group() {
  local label=$1 dir=$2 tags=$3 extra=$4; shift 4
  local names=("$@") n s key stamp=$bin/.stamp-$label
  key=$( { cd "$dir"; cat go.mod go.sum; cat "$here/build.sh"; [ -d cmd ] && find cmd -name '*.go' -type f | LC_ALL=C sort | xargs cat; go env GOVERSION GOOS GOARCH; } | sha256sum | cut -d' ' -f1)
  local ok=1
  for n in "${names[@]}"; do [ -x "$bin/$n" ] || ok=0; done
  if [ $ok = 1 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ]; then
    echo "$label binaries up to date in $bin"
    return 0
  fi
  rm -f "$stamp"
  for n in "${names[@]}"; do
    s=$(date +%s)
    printf '  building %-24s (%s) ...\n' "$n" "${pkg[$n]}"
    # Build to a temporary name and rename, so an interrupted build never leaves a half-written binary.
    if ! (cd "$dir" && go build -trimpath -tags "$tags" -ldflags="-s -w ${flags[$n]:-} $extra" -o "$bin/.$n.tmp" "${pkg[$n]}"); then
      rm -f "$bin/.$n.tmp"
      fail "building $n from ${pkg[$n]} failed after $(( $(date +%s) - s ))s (see the go errors above). If a module could not be downloaded, check that the Go module proxy is reachable (go env GOPROXY); if go.sum is missing an entry, run e2e/cluster/update.sh (or go mod tidy in $dir) and commit go.mod and go.sum."
    fi
    mv -f "$bin/.$n.tmp" "$bin/$n"
    printf '  built    %-24s in %ss\n' "$n" "$(( $(date +%s) - s ))"
  done
  echo "$key" > "$stamp"
}
build_group containerd "$here/containerd" "$ctr_tags" "$ctr_ldflags" "${containerd_names[@]}"
build_group k8s "$here" "" "" "${k8s_names[@]}"
rm -f "$bin/.stamp" # the single stamp of earlier versions of this script
echo "test cluster binaries ready in $(( $(date +%s) - t0 ))s in $bin"
