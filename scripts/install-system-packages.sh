#!/usr/bin/env bash
# Installs, from Debian's archive, the system packages vfleet and its test suites use, only those
# missing: redis-server (the embedded default's queue and state store), and for the suites
# openssh-server (real sshd hosts), QEMU (VMs), busybox-static and cpio (sandbox and guest images),
# iproute2, xz-utils (the test images' kernel package), mmdebstrap, dpkg-dev and apt-utils (the
# Debian root filesystem and the demo APT repository of the patch tests, made by
# scripts/build-apt-test-images.sh), e2fsprogs and openssh-client (the patch tests' VM disk, made
# by scripts/build-apt-vm-image.sh, and the ssh client they check its guest with), Chromium (headless: the HTML audit report's screenshot
# test, and the queue board and report pages of `--http` opened as a browser would) and
# ShellCheck (CI checks the scripts). One list, used by scripts/setup.sh and CI (.ci/run).
set -euo pipefail

packages=(redis-server openssh-server qemu-system-x86 qemu-utils busybox-static cpio iproute2 xz-utils mmdebstrap dpkg-dev apt-utils libdpkg-perl e2fsprogs openssh-client chromium shellcheck)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
sudo=''
[ "$(id -u)" -eq 0 ] || sudo='sudo'
export DEBIAN_FRONTEND=noninteractive
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]} (apt-get)"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# scripts/build-test-images.sh downloads a kernel package (apt-get download): apt needs its lists.
if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
  echo "== apt-get update (for the test images' kernel)"
  $sudo apt-get update -qq
fi
