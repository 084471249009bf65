#!/usr/bin/env bash
# Builds what the tests of patching with APT use (docs/patching.md), and caches it next to the
# other test images: a second run with the same inputs only reads the manifest and says so.
#
#   scripts/build-apt-test-images.sh [--out DIR]
#
# DIR is --out, else $VFLEET_TEST_IMAGES, else ~/.cache/vfleet/test-images. What it holds is a
# contract the tests are written against; add files, do not rename these:
#
#   apt-demo-repo/               a flat APT repository ("deb [trusted=yes] URL ./"): the demo
#                                packages below, built with dpkg-deb, indexed by apt-ftparchive
#                                (Packages, Release; not signed)
#   debian12-apt-rootfs.tar      a Debian 12 root filesystem made by mmdebstrap (--variant=apt:
#                                the Essential packages, dpkg and apt) from this machine's own
#                                Debian mirror (its apt sources file), without docs, man pages
#                                and locales, with vfleet-demo-tls 1.0-1 and vfleet-demo-broken
#                                1.0-1 installed, a local change in vfleet-demo-tls's conffile
#                                (as an operator's edit: dpkg would ask about it), and no apt
#                                sources (a test adds the demo repository's); uncompressed, so a
#                                test can append a file to a copy
#   apt-manifest.json            the cache key, the demo packages, the sha256 of each file
#
# The demo packages (Architecture: all; each ships /usr/share/vfleet-demo/<name>.version and
# the conffile /etc/vfleet-demo/<name>.conf):
#
#   vfleet-demo-tls     1.0-1; 1.0-2 (Depends: vfleet-demo-lib; its postinst asks for a reboot
#                       as Debian's packages do, /var/run/reboot-required, and writes what
#                       policy-rc.d answers about starting its service into
#                       /var/lib/vfleet-demo/policy-rc.d); 1.0-3 (newer than any baseline asks)
#   vfleet-demo-lib     1.0-1 (a new dependency of vfleet-demo-tls 1.0-2)
#   vfleet-demo-broken  1.0-1; 1.0-2, whose postinst writes a message and exits 1
#
# The cache key is the sha256 of this script (which defines the packages) and of
# scripts/apt-images-common.sh (what it shares with build-apt-vm-image.sh), the mirror's sources
# file, the suite and mmdebstrap's version. The archive is the network's one use: when it cannot
# be reached mmdebstrap fails and so does this script, naming the mirror.
set -Eeuo pipefail
umask 022

readonly script_name=build-apt-test-images
readonly manifest_format=1
readonly rootfs_name=debian12-apt-rootfs.tar
readonly repo_name=apt-demo-repo

# shellcheck source=scripts/apt-images-common.sh
. "$(dirname "$(readlink -f "$0")")/apt-images-common.sh"
need dpkg-deb dpkg
need apt-ftparchive apt-utils

key="$(common_key_inputs | sha256sum | cut -d' ' -f1)"
readonly key

up_to_date() {
  [ "$(manifest_field "$out/apt-manifest.json" key)" = "$key" ] &&
    [ -s "$out/$rootfs_name" ] && [ -s "$out/$repo_name/Packages" ]
}

if up_to_date; then
  echo "apt test images up to date in $out"
  exit 0
fi
exec 9>"$out/.build-apt.lock"
flock 9
if up_to_date; then
  echo "apt test images up to date in $out"
  exit 0
fi

echo "== building apt test images in $out (Debian $suite from $mirror, mmdebstrap)"
started=$SECONDS
work="$(mktemp -d "$out/.build-apt.XXXXXX")"
readonly work
trap 'rm -rf "$work"' EXIT

# --- the demo packages -----------------------------------------------------------------------

repo="$work/$repo_name"
mkdir -p "$repo"

demo_package() { # name version depends postinst-body
  local name="$1" version="$2" depends="$3" body="$4" tree
  tree="$work/trees/${name}_$version"
  mkdir -p "$tree/DEBIAN" "$tree/usr/share/vfleet-demo" "$tree/etc/vfleet-demo"
  {
    echo "Package: $name"
    echo "Version: $version"
    echo "Architecture: all"
    echo "Maintainer: vfleet tests <vfleet@example.invalid>"
    echo "Section: misc"
    echo "Priority: optional"
    [ -z "$depends" ] || echo "Depends: $depends"
    echo "Description: vfleet's demo package for patch tests"
    echo " Built by scripts/build-apt-test-images.sh; it installs two small files."
  } >"$tree/DEBIAN/control"
  echo "$version" >"$tree/usr/share/vfleet-demo/$name.version"
  echo "# $name $version" >"$tree/etc/vfleet-demo/$name.conf"
  echo "/etc/vfleet-demo/$name.conf" >"$tree/DEBIAN/conffiles"
  printf '#!/bin/sh\nset -e\n%s\nexit 0\n' "$body" >"$tree/DEBIAN/postinst"
  chmod 0755 "$tree/DEBIAN/postinst"
  find "$tree" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  dpkg-deb --root-owner-group --build "$tree" "$repo/" >/dev/null
}

# What a Debian package that needs a reboot does (update-notifier-common's
# notify-reboot-required); and what the service policy answered while it ran: policy-rc.d, which
# invoke-rc.d and deb-systemd-invoke ask before a maintainer script starts a service.
# shellcheck disable=SC2016 # shell text for the package, expanded when it runs
readonly tls_postinst='if [ "$1" = configure ]; then
  touch /var/run/reboot-required
  echo vfleet-demo-tls >>/var/run/reboot-required.pkgs
  mkdir -p /var/lib/vfleet-demo
  if [ -x /usr/sbin/policy-rc.d ]; then
    answer=0
    /usr/sbin/policy-rc.d vfleet-demo-tls start || answer=$?
    echo "$answer" >/var/lib/vfleet-demo/policy-rc.d
  else
    echo absent >/var/lib/vfleet-demo/policy-rc.d
  fi
fi'
demo_package vfleet-demo-tls 1.0-1 '' ''
demo_package vfleet-demo-lib 1.0-1 '' ''
demo_package vfleet-demo-tls 1.0-2 'vfleet-demo-lib (>= 1.0-1)' "$tls_postinst"
demo_package vfleet-demo-tls 1.0-3 'vfleet-demo-lib (>= 1.0-1)' ''
demo_package vfleet-demo-broken 1.0-1 '' ''
demo_package vfleet-demo-broken 1.0-2 '' 'echo "vfleet-demo-broken: this postinst fails on purpose (a test package)" >&2
exit 1'

(cd "$repo" && apt-ftparchive packages . >Packages)
apt-ftparchive -o APT::FTPArchive::Release::Origin=vfleet-demo \
  -o APT::FTPArchive::Release::Label=vfleet-demo release "$repo" >"$work/Release"
mv "$work/Release" "$repo/Release"

# --- the Debian root filesystem --------------------------------------------------------------

demo_root_options "$repo"
mmdebstrap "${demo_root[@]}" --format=tar "$suite" "$work/$rootfs_name" "$sources" ||
  die "mmdebstrap could not build Debian $suite from $mirror (is the Debian archive reachable?)"

# --- manifest, then everything into place ----------------------------------------------------

{
  printf '{\n'
  printf '  "formatVersion": %s,\n' "$manifest_format"
  printf '  "key": "%s",\n' "$key"
  printf '  "suite": "%s",\n' "$suite"
  printf '  "mirror": "%s",\n' "$mirror"
  printf '  "rootfs": "%s",\n' "$rootfs_name"
  printf '  "repo": "%s",\n' "$repo_name"
  printf '  "files": {\n'
  printf '    "%s": "%s",\n' "$rootfs_name" "$(sha256_of "$work/$rootfs_name")"
  printf '    "%s/Packages": "%s"\n' "$repo_name" "$(sha256_of "$repo/Packages")"
  printf '  }\n'
  printf '}\n'
} >"$work/apt-manifest.json"

rm -f "$out/apt-manifest.json"
rm -rf "${out:?}/$repo_name"
mv "$repo" "$out/$repo_name"
mv -f "$work/$rootfs_name" "$out/$rootfs_name"
mv -f "$work/apt-manifest.json" "$out/apt-manifest.json"
echo "apt test images built in $out in $((SECONDS - started)) s"
