#!/usr/bin/env bash
# Installs everything the lab and the tests need on a fresh Debian machine (idempotent; fast when warm):
# Debian packages, the Go-built test cluster binaries, and boringtun-cli (userspace WireGuard).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

apt_pkgs=(bird2 iproute2 nftables wireguard-tools tcpdump iputils-ping curl)
install_apt() {
  local missing=()
  for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -eq 0 ]; then echo "apt packages present: ${apt_pkgs[*]}"; return 0; fi
  if [ "$(id -u)" -ne 0 ]; then echo "need root to apt-get install ${missing[*]}; rerun as root" >&2; return 1; fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

install_boringtun() {
  local root=$OCELOT_CACHE/boringtun
  if [ -x "$root/bin/boringtun-cli" ]; then echo "boringtun-cli present: $root/bin/boringtun-cli"; return 0; fi
  cargo install --locked --quiet boringtun-cli --version 0.7.1 --root "$root"
}

install_cluster() {
  if [ -x "$OCELOT_ROOT/e2e/cluster/build.sh" ]; then "$OCELOT_ROOT/e2e/cluster/build.sh"; else echo "no e2e/cluster/build.sh yet"; fi
}

stage "apt packages" install_apt
stage "test cluster binaries (etcd, kube-apiserver, kubectl, helm)" install_cluster
stage "boringtun-cli" install_boringtun
