#!/usr/bin/env bash
# Builds the VM that the tests of patching VMs with APT boot (docs/patching.md, "VMs over SSH"),
# and caches it next to the apt test images: a second run with the same inputs only reads the
# manifest and says so. It runs scripts/build-apt-test-images.sh first (the demo repository).
#
#   scripts/build-apt-vm-image.sh [--out DIR]
#
# DIR is --out, else $VFLEET_TEST_IMAGES, else ~/.cache/vfleet/test-images. What it holds is a
# contract the tests are written against; add files, do not rename these:
#
#   debian12-vm.qcow2          the guest's disk: one ext4 filesystem on the whole disk (no
#                              partition table; made with `mkfs.ext4 -d` from a folder, nothing
#                              mounted), Debian 12 by mmdebstrap (variant apt) from this machine's
#                              mirror plus systemd, the cloud kernel (linux-image-cloud-amd64),
#                              openssh-server; vfleet-demo-tls and vfleet-demo-broken 1.0-1
#                              installed with the same local conffile change as the apt rootfs;
#                              one apt source, `deb [trusted=yes] http://10.0.2.100/ ./`, which
#                              the VM's QEMU forwards (guestfwd) to the demo repository's port
#                              on 127.0.0.1 of its host; a static address on QEMU's user network
#                              (10.0.2.15/24)
#   debian12-vm-vmlinuz        the kernel and the initramfs, taken from the disk's /boot (QEMU's
#   debian12-vm-initrd.img     -kernel and -initrd: no bootloader); the initramfs holds only the
#                              modules a virtio guest needs (MODULES=list), so it is small
#   debian12-vm-login-key      the key vfleet logs into the guest with (ed25519, root's
#   debian12-vm-login-key.pub  authorized key; the private one mode 0600, never printed)
#   apt-vm-manifest.json       the cache key, the guest's host key (ssh-ed25519, generated here,
#                              the only one its sshd offers: vfleet pins it), the kernel command
#                              line, the ready marker, the sha256 of each file
#
# Once booted the guest prints VFLEET-GUEST-READY on its serial console after sshd started.
#
# The cache key is the sha256 of this script, of scripts/apt-images-common.sh, the mirror's
# sources file, the suite, mmdebstrap's and mke2fs' versions and the apt test images' key.
set -Eeuo pipefail
umask 022

readonly script_name=build-apt-vm-image
readonly manifest_format=1
readonly disk_name=debian12-vm.qcow2
readonly kernel_name=debian12-vm-vmlinuz
readonly initrd_name=debian12-vm-initrd.img
readonly login_key_name=debian12-vm-login-key
readonly disk_size=2G
readonly ready_marker=VFLEET-GUEST-READY
readonly cmdline='root=/dev/vda rw console=ttyS0 quiet panic=-1'
# The demo repository as the guest sees it: QEMU's user network forwards it (guestfwd).
readonly guest_repo='http://10.0.2.100/'

# shellcheck source=scripts/apt-images-common.sh
. "$(dirname "$(readlink -f "$0")")/apt-images-common.sh"
need mkfs.ext4 e2fsprogs
need qemu-img qemu-utils
need ssh-keygen openssh-client

# The demo packages the guest starts with come from the apt test images' repository.
bash "$(dirname "$script_path")/build-apt-test-images.sh" --out "$out"
apt_key="$(manifest_field "$out/apt-manifest.json" key)"
[ -n "$apt_key" ] || die "no apt test images in $out"
readonly apt_key

key="$(
  {
    common_key_inputs
    # sed reads all of it: head would leave mke2fs a SIGPIPE (exit 141: pipefail, errexit)
    mkfs.ext4 -V 2>&1 | sed -n 1p
    echo "$apt_key"
  } | sha256sum | cut -d' ' -f1
)"
readonly key

up_to_date() {
  [ "$(manifest_field "$out/apt-vm-manifest.json" key)" = "$key" ] &&
    [ -s "$out/$disk_name" ] && [ -s "$out/$kernel_name" ] && [ -s "$out/$initrd_name" ] &&
    [ -s "$out/$login_key_name" ]
}

if up_to_date; then
  echo "apt VM image up to date in $out"
  exit 0
fi
exec 9>"$out/.build-apt-vm.lock"
flock 9
if up_to_date; then
  echo "apt VM image up to date in $out"
  exit 0
fi

echo "== building the apt VM image in $out (Debian $suite from $mirror, mmdebstrap)"
started=$SECONDS
work="$(mktemp -d "$out/.build-apt-vm.XXXXXX")"
readonly work
trap 'rm -rf "$work"' EXIT
repo="$out/apt-demo-repo"

# --- keys ------------------------------------------------------------------------------------

ssh-keygen -q -t ed25519 -N '' -C vfleet-guest-host -f "$work/host-key"
ssh-keygen -q -t ed25519 -N '' -C vfleet-login -f "$work/$login_key_name"

# --- files the guest gets --------------------------------------------------------------------

extra="$work/extra"
mkdir -p "$extra/etc/ssh/sshd_config.d" "$extra/etc/systemd/network" \
  "$extra/etc/systemd/system" "$extra/etc/initramfs-tools/conf.d" "$extra/root/.ssh" \
  "$extra/etc/apt/sources.list.d"
cp "$work/host-key" "$extra/etc/ssh/ssh_host_ed25519_key"
cp "$work/host-key.pub" "$extra/etc/ssh/ssh_host_ed25519_key.pub"
cp "$work/$login_key_name.pub" "$extra/root/.ssh/authorized_keys"
cat >"$extra/etc/ssh/sshd_config.d/vfleet.conf" <<'EOF'
# vfleet's test guest: the one host key vfleet pins, keys only, no DNS lookups.
HostKey /etc/ssh/ssh_host_ed25519_key
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UseDNS no
EOF
# QEMU's user network: the guest is 10.0.2.15, the host's side 10.0.2.2 (restrict=on: nothing
# beyond it but the forwards). Static, so the boot waits for no DHCP.
cat >"$extra/etc/systemd/network/10-vfleet.network" <<'EOF'
[Match]
Name=en* eth*

[Network]
Address=10.0.2.15/24
Gateway=10.0.2.2
LinkLocalAddressing=no
IPv6AcceptRA=no
EOF
cat >"$extra/etc/systemd/system/vfleet-ready.service" <<EOF
[Unit]
Description=Say on the serial console that sshd runs
After=ssh.service
Wants=ssh.service

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo $ready_marker >/dev/ttyS0'

[Install]
WantedBy=multi-user.target
EOF
printf 'MODULES=list\nCOMPRESS=gzip\n' >"$extra/etc/initramfs-tools/conf.d/vfleet.conf"
echo "deb [trusted=yes] $guest_repo ./" >"$extra/etc/apt/sources.list.d/vfleet-demo.list"
echo vfleet-guest >"$extra/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 vfleet-guest\n' >"$extra/etc/hosts"
echo '/dev/vda / ext4 rw,errors=remount-ro 0 1' >"$extra/etc/fstab"
chmod 0600 "$extra/etc/ssh/ssh_host_ed25519_key"
chmod 0700 "$extra/root/.ssh"
tar -C "$extra" --owner=0 --group=0 --numeric-owner -cf "$work/extra.tar" .

# --- the root filesystem ---------------------------------------------------------------------

# What the boot does not need under TCG: timers that would run apt or scrub disks, a login
# prompt, waiting for the network to be "online" (the address is static).
readonly masked='apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer
  e2scrub_reap.service fstrim.timer systemd-networkd-wait-online.service getty@tty1.service
  serial-getty@ttyS0.service'
root="$work/root"
demo_root_options "$repo"
# shellcheck disable=SC2016 # mmdebstrap runs the hooks with the root as $1
mmdebstrap "${demo_root[@]}" --format=directory \
  --include=systemd-sysv,udev,linux-image-cloud-amd64,openssh-server \
  --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
  --customize-hook="tar-in $work/extra.tar /" \
  --customize-hook='chroot "$1" sh -c "mkdir -p /run/sshd && /usr/sbin/sshd -t"' \
  --customize-hook='systemctl --root="$1" enable systemd-networkd.service vfleet-ready.service' \
  --customize-hook="systemctl --root=\"\$1\" mask $(echo "$masked" | tr -s ' \n' '  ')" \
  --customize-hook='printf "virtio_pci\nvirtio_blk\nvirtio_net\next4\n" >>"$1/etc/initramfs-tools/modules"' \
  --customize-hook='chroot "$1" update-initramfs -u -k all' \
  --customize-hook='rm -f "$1"/etc/machine-id; touch "$1"/etc/machine-id' \
  "$suite" "$root" "$sources" ||
  die "mmdebstrap could not build Debian $suite from $mirror (is the Debian archive reachable?)"

vmlinuz="$(find "$root/boot" -maxdepth 1 -name 'vmlinuz-*' | head -n1)"
[ -n "$vmlinuz" ] || die "the guest has no /boot/vmlinuz-*"
kernel_release="${vmlinuz##*/vmlinuz-}"
[ -s "$root/boot/initrd.img-$kernel_release" ] || die "the guest has no initrd for $kernel_release"
cp "$vmlinuz" "$work/$kernel_name"
cp "$root/boot/initrd.img-$kernel_release" "$work/$initrd_name"

# --- the disk --------------------------------------------------------------------------------

# -d copies the folder into the new filesystem (owners, modes, links, devices): nothing is
# mounted. A fixed UUID and hash seed, so the same folder makes the same filesystem.
mkfs.ext4 -q -F -L vfleet-root -U 6c0a9a8e-1d2b-4c3d-9e4f-5a6b7c8d9e0f \
  -E root_owner=0:0,hash_seed=2a1e6f7e-3b4c-4d5e-8f90-a1b2c3d4e5f6 \
  -d "$root" "$work/disk.raw" "$disk_size"
qemu-img convert -q -f raw -O qcow2 "$work/disk.raw" "$work/$disk_name"
rm -f "$work/disk.raw"
rm -rf "$root"

# --- manifest, then everything into place ----------------------------------------------------

{
  printf '{\n'
  printf '  "formatVersion": %s,\n' "$manifest_format"
  printf '  "key": "%s",\n' "$key"
  printf '  "suite": "%s",\n' "$suite"
  printf '  "mirror": "%s",\n' "$mirror"
  printf '  "kernelRelease": "%s",\n' "$kernel_release"
  printf '  "cmdline": "%s",\n' "$cmdline"
  printf '  "readyMarker": "%s",\n' "$ready_marker"
  printf '  "guestRepo": "%s",\n' "$guest_repo"
  printf '  "hostKey": "%s",\n' "$(cut -d' ' -f1-2 <"$work/host-key.pub")"
  printf '  "disk": "%s",\n' "$disk_name"
  printf '  "kernel": "%s",\n' "$kernel_name"
  printf '  "initrd": "%s",\n' "$initrd_name"
  printf '  "loginKey": "%s",\n' "$login_key_name"
  printf '  "files": {\n'
  printf '    "%s": "%s",\n' "$disk_name" "$(sha256_of "$work/$disk_name")"
  printf '    "%s": "%s",\n' "$kernel_name" "$(sha256_of "$work/$kernel_name")"
  printf '    "%s": "%s"\n' "$initrd_name" "$(sha256_of "$work/$initrd_name")"
  printf '  }\n'
  printf '}\n'
} >"$work/apt-vm-manifest.json"

rm -f "$out/apt-vm-manifest.json"
chmod 0600 "$work/$login_key_name"
for f in "$disk_name" "$kernel_name" "$initrd_name" "$login_key_name" "$login_key_name.pub"; do
  mv -f "$work/$f" "$out/$f"
done
mv -f "$work/apt-vm-manifest.json" "$out/apt-vm-manifest.json"
echo "apt VM image built in $out in $((SECONDS - started)) s"
