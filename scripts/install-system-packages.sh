#!/usr/bin/env bash
# Installs, from Debian's archive, the system packages vfleet and its test suites use, only those
# missing: redis-server (the embedded default's queue and state store), and for the suites
# openssh-server (real sshd hosts), QEMU (VMs), busybox-static and cpio (sandbox and guest images),
# iproute2, and Chromium (the HTML audit report's screenshot test). One list, used by
# scripts/setup.sh and by CI (.ci/run).
set -euo pipefail

packages=(redis-server openssh-server qemu-system-x86 qemu-utils busybox-static cpio iproute2 chromium)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "== installing ${missing[*]} (apt-get)"
sudo=''
[ "$(id -u)" -eq 0 ] || sudo='sudo'
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
