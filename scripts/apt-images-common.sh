# shellcheck shell=bash
# What scripts/build-apt-test-images.sh and scripts/build-apt-vm-image.sh share: sourced after
# each sets `script_name`. It reads --out (else $VFLEET_TEST_IMAGES, else
# ~/.cache/vfleet/test-images) into `out`, finds this machine's Debian mirror (`sources`,
# `mirror`), and defines die, need, manifest_field and sha256_of. Part of both scripts' cache
# keys: an edit here rebuilds both.

readonly suite=bookworm
# Fixed times: the same inputs make the same packages (dpkg-deb and mmdebstrap read it).
export SOURCE_DATE_EPOCH=1700000000

# shellcheck disable=SC2154 # script_name is the sourcing script's
trap 'echo "$script_name: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

die() {
  echo "$script_name: $*" >&2
  exit 1
}

out="${VFLEET_TEST_IMAGES:-$HOME/.cache/vfleet/test-images}"
while [ $# -gt 0 ]; do
  case "$1" in
    --out)
      [ $# -ge 2 ] || die "--out needs a folder"
      out="$2"
      shift 2
      ;;
    --out=*)
      out="${1#--out=}"
      shift
      ;;
    -h | --help)
      sed -n '2,/^set -E/{/^set -E/d;s/^# \{0,1\}//;p}' "$0"
      exit 0
      ;;
    *) die "unknown argument: $1 (try --help)" ;;
  esac
done

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is missing: apt-get install $2"
}
need mmdebstrap mmdebstrap
need sha256sum coreutils
need flock util-linux
need tar tar

# The Debian mirror this machine's apt uses: its deb822 sources file (Debian 12's default), else
# sources.list. mmdebstrap pastes the file into the new root's apt sources while it builds.
sources=''
for candidate in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
  if [ -f "$candidate" ] && grep -Eq '^[[:space:]]*(Types:|deb[[:space:]])' "$candidate"; then
    sources="$candidate"
    break
  fi
done
[ -n "$sources" ] || die "no Debian apt sources on this machine (/etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list)"
mirror="$(sed -n 's/^[[:space:]]*URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p; s/^[[:space:]]*deb[[:space:]]\{1,\}\(\[[^]]*\][[:space:]]*\)\{0,1\}\([^[:space:]]*\).*/\2/p' "$sources" | head -n1)"
# shellcheck disable=SC2034 # used by the sourcing scripts
readonly sources mirror

script_path="$(readlink -f "$0")"
common_path="$(readlink -f "${BASH_SOURCE[0]}")"
readonly script_path common_path
mkdir -p "$out"
out="$(cd "$out" && pwd -P)"
readonly out

manifest_field() { # file name
  [ -f "$1" ] || return 0
  sed -n "s/^ *\"$2\": \"\\([^\"]*\\)\",\\{0,1\\}\$/\\1/p" "$1" | sed -n 1p
}

sha256_of() { sha256sum <"$1" | cut -d' ' -f1; }

# mmdebstrap's options for a Debian root with the demo packages of the repository in $1, into
# the array `demo_root`: variant apt; docs, man pages and locales left out (as Debian's own slim
# images do; copyright stays); vfleet-demo-tls and vfleet-demo-broken 1.0-1 installed; a local
# change in vfleet-demo-tls's conffile (as an operator's edit: dpkg would ask about it); none of
# the build's apt sources left.
demo_root_options() { # repo
  # shellcheck disable=SC2016,SC2034 # hooks get the root as $1; demo_root is the caller's
  demo_root=(--variant=apt --quiet
    --dpkgopt='path-exclude=/usr/share/man/*'
    --dpkgopt='path-exclude=/usr/share/locale/*'
    --dpkgopt='path-exclude=/usr/share/info/*'
    --dpkgopt='path-exclude=/usr/share/doc/*'
    --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --customize-hook="copy-in $1/vfleet-demo-tls_1.0-1_all.deb $1/vfleet-demo-broken_1.0-1_all.deb /tmp"
    --customize-hook='chroot "$1" dpkg -i /tmp/vfleet-demo-tls_1.0-1_all.deb /tmp/vfleet-demo-broken_1.0-1_all.deb'
    --customize-hook='echo "# a local change, as an operator would make" >>"$1/etc/vfleet-demo/vfleet-demo-tls.conf"'
    --customize-hook='rm -f "$1"/tmp/*.deb "$1"/etc/apt/sources.list "$1"/etc/apt/sources.list.d/*')
}

# The inputs every image of these scripts depends on: this file, the calling script, the
# mirror's sources file, the suite and mmdebstrap's version (one line each, for a key's hash).
common_key_inputs() {
  sha256_of "$script_path"
  sha256_of "$common_path"
  sha256_of "$sources"
  echo "$suite"
  mmdebstrap --version 2>&1 | head -n1
}
