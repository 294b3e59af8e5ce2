#!/usr/bin/env bash
# Writes the operator and agent images as OCI image layouts in tar files, without a container
# engine: the layer is a reproducible tar of the release binaries at the paths the chart runs
# (/usr/local/bin), config, manifest and index are written as JSON with their sha256 digests.
# Load one into containerd with `ctr -n k8s.io images import --all-platforms FILE`.
#
#   scripts/images.sh [--bin-dir target/release] [--out target/images] [--version 0.1.0]
#
# The agent image also gets, when found on this machine, a static busybox (/bin/sh, cp, chmod, mv
# for the chart's install-cni init container), bird/birdc (bird2) and boringtun-cli. The
# Dockerfiles in images/ build the full images (Debian's bird2) where a container engine exists.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin_dir=${CARGO_TARGET_DIR:-$root/target}/release
out=$root/target/images
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$root/Cargo.toml")
while [ $# -gt 0 ]; do
  case $1 in
    --bin-dir) bin_dir=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --version) version=$2; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }

# image NAME ENTRYPOINT FILE=DEST...: one single-layer image.
image() {
  local name=$1 entry=$2; shift 2
  local rootfs=$work/$name/rootfs layout=$work/$name/layout
  mkdir -p "$rootfs" "$layout/blobs/sha256"
  for spec in "$@"; do
    local src=${spec%%=*} dest=${spec#*=}
    mkdir -p "$rootfs$(dirname "$dest")"
    if [ "${src#@}" != "$src" ]; then ln -sf "${src#@}" "$rootfs$dest"; else install -m 0755 "$src" "$rootfs$dest"; fi
  done
  mkdir -p "$rootfs/tmp" "$rootfs/etc"
  printf 'root:x:0:0:root:/:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/:/sbin/nologin\n' > "$rootfs/etc/passwd"
  local layer=$work/$name/layer.tar
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=posix \
      --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime -C "$rootfs" -cf "$layer" .
  local layer_d; layer_d=$(sha "$layer")
  mv "$layer" "$layout/blobs/sha256/$layer_d"
  local config=$work/$name/config.json
  printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":["%s"],"Env":["PATH=/usr/local/bin:/usr/sbin:/usr/bin:/bin"],"Labels":{"org.opencontainers.image.version":"%s","org.opencontainers.image.title":"%s"}},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"scripts/images.sh"}]}' \
    "$entry" "$version" "$name" "$layer_d" > "$config"
  local config_d; config_d=$(sha "$config")
  local config_s; config_s=$(size "$config")
  mv "$config" "$layout/blobs/sha256/$config_d"
  local manifest=$work/$name/manifest.json
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$config_d" "$config_s" "$layer_d" "$(size "$layout/blobs/sha256/$layer_d")" > "$manifest"
  local manifest_d; manifest_d=$(sha "$manifest")
  local manifest_s; manifest_s=$(size "$manifest")
  mv "$manifest" "$layout/blobs/sha256/$manifest_d"
  printf '{"imageLayoutVersion":"1.0.0"}' > "$layout/oci-layout"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"org.opencontainers.image.ref.name":"%s","io.containerd.image.name":"ghcr.io/ocelot-net/%s:%s"}}]}' \
    "$manifest_d" "$manifest_s" "$version" "$name" "$version" > "$layout/index.json"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$layout" -cf "$out/$name-$version.oci.tar" .
  echo "wrote $out/$name-$version.oci.tar (ghcr.io/ocelot-net/$name:$version, manifest sha256:$manifest_d)"
}

for b in ocelot-operator ocelot-agent ocelot-cni; do
  [ -x "$bin_dir/$b" ] || { echo "$bin_dir/$b not found: cargo build --release -p ocelot-operator -p ocelot-agent" >&2; exit 1; }
done
image ocelot-operator /usr/local/bin/ocelot-operator "$bin_dir/ocelot-operator=/usr/local/bin/ocelot-operator"

agent=("$bin_dir/ocelot-agent=/usr/local/bin/ocelot-agent" "$bin_dir/ocelot-cni=/usr/local/bin/ocelot-cni")
if [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; then
  agent+=("/bin/busybox=/bin/busybox")
  for a in sh cp chmod mv; do agent+=("@busybox=/bin/$a"); done
fi
for b in /usr/sbin/bird /usr/sbin/birdc; do [ -x "$b" ] && agent+=("$b=$b"); done
bt=$(command -v boringtun-cli || true)
[ -z "$bt" ] && [ -x "${OCELOT_CACHE:-$HOME/.cache/ocelot}/bin/boringtun-cli" ] && bt=${OCELOT_CACHE:-$HOME/.cache/ocelot}/bin/boringtun-cli
[ -n "$bt" ] && agent+=("$bt=/usr/local/bin/boringtun-cli")
image ocelot-agent /usr/local/bin/ocelot-agent "${agent[@]}"
