#!/usr/bin/env bash
# Installs everything the lab and the tests need on a fresh Debian machine (idempotent; fast when warm):
# Debian packages, the Go-built test cluster binaries, boringtun-cli (userspace WireGuard), and the files
# the kube lab's images are made of.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# runc, CNI reference plugins, busybox-static and catatonit (the pause process) are for the kube lab's nodes
# and images; containerd itself is built from its Go module (Debian's would run as a service).
apt_pkgs=(bird2 binutils iproute2 nftables wireguard-tools tcpdump iputils-ping curl util-linux
  runc containernetworking-plugins busybox-static catatonit)
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

# Debian's nginx for the kube lab's HTTP image: unpacked, not installed (its package would start a service
# listening on the host). Its libraries are installed as packages; nginx-common (the service) is not.
install_nginx_root() {
  local root=$OCELOT_CACHE/nginx-root tmp deps
  if [ -x "$root/usr/sbin/nginx" ]; then echo "nginx present: $root/usr/sbin/nginx"; return 0; fi
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download nginx) || { apt-get update -qq && (cd "$tmp" && apt-get download nginx); }
  deps=$(dpkg-deb -f "$tmp"/nginx_*.deb Depends | tr ',' '\n' | sed 's/(.*//; s/|.*//; s/ //g' | grep -v '^nginx' | sort -u)
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $deps
  rm -rf "$root.tmp" && dpkg -x "$tmp"/nginx_*.deb "$root.tmp" && rm -rf "$root" && mv "$root.tmp" "$root"
  rm -rf "$tmp"
  echo "nginx unpacked into $root"
}

stage "apt packages" install_apt
stage "nginx for the kube lab image" install_nginx_root
stage "test cluster binaries (etcd, kube-apiserver, kubectl, helm, kubelet, kube-scheduler, kube-controller-manager, containerd)" install_cluster
stage "boringtun-cli" install_boringtun
