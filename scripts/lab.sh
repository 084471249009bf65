#!/usr/bin/env bash
# A lab of "real hosts" on this one machine: N sshd servers on 127.0.0.2 ... 127.0.0.(N+1), one
# port, each with its own host key, config, log and data folder, and one client key for vfleet.
# `up` also builds the test images (cached) and writes a fleet spec for the lab (docs/lab.md).
#
#   scripts/lab.sh up [N]    start N hosts (default 3; hosts beyond N are stopped), write the spec
#   scripts/lab.sh down      destroy what the lab runs (vfleet destroy, then a sweep of the
#                            hosts' QEMU and sandbox processes and cgroups), stop every lab sshd
#                            and their sessions (keys and data stay)
#   scripts/lab.sh status    list the hosts
#
#   LAB_DIR   the lab's folder (default .vfleet/lab in the repository)
#   LAB_PORT  the port every host listens on (default 2222)
#   LAB_SPEC  the spec up writes (default examples/lab.yaml; generated, so git ignores it)
#   VFLEET_TEST_IMAGES  where the test images are (default ~/.cache/vfleet/test-images)
#
# Running `up` again is harmless: keys are kept (so the pinned host keys stay valid), a running
# sshd whose config did not change is left alone. To start from scratch: down, then rm -r LAB_DIR.
set -Eeuo pipefail
trap 'echo "lab: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

repo="$(cd "$(dirname "$0")/.." && pwd -P)"
readonly repo
lab_dir="$(realpath -m "${LAB_DIR:-$repo/.vfleet/lab}")"
readonly lab_dir
readonly port="${LAB_PORT:-2222}"
spec="$(realpath -m "${LAB_SPEC:-$repo/examples/lab.yaml}")"
readonly spec
images_dir="$(realpath -m "${VFLEET_TEST_IMAGES:-$HOME/.cache/vfleet/test-images}")"
readonly images_dir
readonly max_hosts=253 # 127.0.0.2 .. 127.0.0.254

die() {
  echo "lab: $*" >&2
  exit 1
}

usage() {
  sed -n '2,/^set -E/{/^set -E/d;s/^# \{0,1\}//;p}' "$0"
}

need() { # command, Debian package
  command -v "$1" >/dev/null 2>&1 || die "$1 is missing: apt-get install $2"
}

# What vfleet and sshd get from here lands in a spec whose paths allow only these characters
# (schemas/fleet.schema.json: localPath, remotePath), so refuse anything else up front.
check_path() { # path, what it is
  if ! [[ $1 =~ ^/[A-Za-z0-9._+@/-]+$ ]] || [[ $1 =~ (^|/)\.\.?(/|$) ]]; then
    die "$2 ($1) must be an absolute path of letters, digits and . _ + @ / - only"
  fi
}

int_between() { # value, min, max
  [[ $1 =~ ^[0-9]{1,9}$ ]] && [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]
}

int_between "$port" 1 65535 || die "LAB_PORT must be a TCP port number, not '$port'"

host_name() { echo "lab-$1"; }
host_address() { echo "127.0.0.$(($1 + 1))"; }
host_dir() { echo "$lab_dir/hosts/lab-$1"; }

# The pid in a host's pidfile if that process is still the lab's sshd for that host (a stale
# pidfile may name a pid the system has since given to something else).
running_pid() { # host number
  local dir pid
  dir="$(host_dir "$1")"
  [ -f "$dir/sshd.pid" ] || return 0
  pid="$(cat "$dir/sshd.pid")"
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-f $dir/sshd_config" || return 0
  echo "$pid"
}

# Host numbers with a folder in the lab, in order.
known_hosts_numbers() {
  [ -d "$lab_dir/hosts" ] || return 0
  find "$lab_dir/hosts" -mindepth 1 -maxdepth 1 -name 'lab-*' -printf '%f\n' |
    sed -n 's/^lab-\([0-9]\{1,3\}\)$/\1/p' | sort -n
}

# A process and everything it started, children first. sshd runs each connection in a new
# session, so a process group would not reach them; the parent links do.
descendants() { # pid
  local child
  for child in $(ps -e -o pid=,ppid= | awk -v p="$1" '$2 == p { print $1 }'); do
    descendants "$child"
    echo "$child"
  done
}

# Alive and not a zombie: a killed daemon stays a zombie until PID 1 reaps it, and some PID 1s
# (in containers) take their time.
alive() { # pid
  local state
  state="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)"
  [ -n "$state" ] && [ "$state" != Z ]
}

stop_host() { # host number
  local pid pids waited=0
  pid="$(running_pid "$1")"
  [ -n "$pid" ] || {
    rm -f "$(host_dir "$1")/sshd.pid"
    return 0
  }
  # The listener first, so it accepts nothing new, then its sessions.
  pids="$(descendants "$pid")"
  kill -TERM "$pid" 2>/dev/null || true
  # shellcheck disable=SC2086 # a list of pids
  [ -z "$pids" ] || kill -TERM $pids 2>/dev/null || true
  while alive "$pid" && [ $waited -lt 50 ]; do
    sleep 0.1
    waited=$((waited + 1))
  done
  # shellcheck disable=SC2086
  kill -KILL "$pid" $pids 2>/dev/null || true
  rm -f "$(host_dir "$1")/sshd.pid"
  echo "stopped $(host_name "$1") (pid $pid)"
}

# --- what the hosts run ------------------------------------------------------------------------
# The engines detach QEMU (-daemonize) and sandboxes (setsid) from the ssh sessions, so stopping
# an sshd leaves them running. They are found by the lab's own paths, never by a program name:
# a QEMU's command line names its pidfile and disk in <dataDir>/instances/<name>/, a sandbox's
# unshare names its rootfs there, and a sandbox's cgroup is in its record.json.

# The lab's instance folders, one a line: <host dir>/data/instances/<name>.
instance_dirs() {
  local k
  for k in $(known_hosts_numbers); do
    [ -d "$(host_dir "$k")/data/instances" ] || continue
    find "$(host_dir "$k")/data/instances" -mindepth 1 -maxdepth 1 -type d
  done
}

# Live pids whose command line has an argument naming a file in one of the lab's instance folders
# (or, with an argument, in that folder of a lab host's data folder: /data/bin/vfleet-agent- for
# the vfleet agent's loops).
instance_processes() {
  local file pid under="${1:-/data/instances/}"
  # One grep reads every command line; the few that name the lab are looked at closely.
  while read -r file; do
    pid="${file#/proc/}"
    pid="${pid%/cmdline}"
    [ "$pid" != $$ ] || continue
    alive "$pid" || continue
    # The sshds name their configs under the same folders: only the instance folders count.
    tr '\0' '\n' <"$file" 2>/dev/null | grep -F -e "$lab_dir/hosts/lab-" |
      grep -F -e "$under" >/dev/null || continue
    echo "$pid"
  done < <(grep -lsF -e "$lab_dir/hosts/lab-" /proc/[0-9]*/cmdline || true)
}

# The cgroup a sandbox's record names, when it is one vfleet made for that lab host and instance
# (<cgroup2>/vfleet/lab-K/<name>) and it still exists.
instance_cgroup() { # instance folder
  local dir="$1" name host cgroup
  name="$(basename "$dir")"
  host="$(basename "$(dirname "$(dirname "$(dirname "$dir")")")")"
  [ -f "$dir/record.json" ] || return 0
  cgroup="$(sed -n 's/^ *"cgroup": *"\([^"]*\)".*/\1/p' "$dir/record.json" | head -n1)"
  [ -n "$cgroup" ] || return 0
  case "$cgroup" in /sys/fs/cgroup/*"/vfleet/$host/$name") ;; *) return 0 ;; esac
  [[ $cgroup =~ (^|/)\.\.?(/|$) ]] && return 0
  if [ -d "$cgroup" ]; then echo "$cgroup"; fi
}

remove_cgroup() { # cgroup path
  local waited=0 pid
  if [ -f "$1/cgroup.kill" ]; then
    echo 1 >"$1/cgroup.kill" 2>/dev/null || true
  else
    while read -r pid; do kill -KILL "$pid" 2>/dev/null || true; done <"$1/cgroup.procs"
  fi
  while [ -s "$1/cgroup.procs" ] && [ $waited -lt 50 ]; do
    sleep 0.1
    waited=$((waited + 1))
  done
  rmdir "$1" 2>/dev/null && echo "removed cgroup $1" || echo "lab: could not remove cgroup $1" >&2
}

# vfleet's own teardown first, when the lab's spec, a built vfleet and the fleet's state (REDIS_URL,
# or a private Redis in this folder, as `npx vfleet apply` left it) are there: the state then
# says the instances are gone. A private Redis that was not running is stopped again after.
destroy_with_vfleet() {
  local redis_pid='' was_running=''
  [ -f "$spec" ] && [ -f "$repo/dist/src/cli/main.js" ] || return 0
  if [ -z "${REDIS_URL:-}" ]; then
    [ -d "$PWD/.vfleet/redis" ] || return 0
    redis_pid="$(cat "$PWD/.vfleet/redis/redis.pid" 2>/dev/null || true)"
    [[ $redis_pid =~ ^[0-9]+$ ]] && alive "$redis_pid" && was_running=1
  fi
  echo "destroying the lab's instances: vfleet destroy -f $spec"
  timeout 300 node "$repo/bin/vfleet.js" destroy --auto-approve -f "$spec" ||
    echo "lab: vfleet destroy did not finish; sweeping what is left" >&2
  if [ -z "${REDIS_URL:-}" ] && [ -z "$was_running" ]; then
    node "$repo/bin/vfleet.js" down >/dev/null || true
  fi
}

# Whatever a destroy left (a crashed apply, a host vfleet could not reach, no state): the lab's
# QEMU and sandbox processes, by their folders, then their cgroups.
sweep_instances() {
  local pids pid waited=0 dir cgroup
  # The vfleet agents first (a controller stopped cleanly has disarmed them already): their
  # watchdogs would otherwise kill what is left a ttl later, which is harmless but noisy.
  pids="$(instance_processes /data/bin/vfleet-agent-)"
  if [ -n "$pids" ]; then
    # shellcheck disable=SC2086 # a list of pids
    kill -KILL $pids 2>/dev/null || true
    for pid in $pids; do echo "stopped vfleet agent process $pid"; done
  fi
  pids="$(instance_processes)"
  if [ -n "$pids" ]; then
    # shellcheck disable=SC2086 # a list of pids
    kill -TERM $pids 2>/dev/null || true
    for pid in $pids; do
      while alive "$pid" && [ $waited -lt 50 ]; do
        sleep 0.1
        waited=$((waited + 1))
      done
    done
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    for pid in $pids; do echo "stopped instance process $pid"; done
  fi
  while read -r dir; do
    [ -n "$dir" ] || continue
    cgroup="$(instance_cgroup "$dir")"
    [ -z "$cgroup" ] || remove_cgroup "$cgroup"
  done < <(instance_dirs)
}

# A host's sshd is up if any is: vfleet reaches the hosts through them.
any_host_up() {
  local k
  for k in $(known_hosts_numbers); do [ -z "$(running_pid "$k")" ] || return 0; done
  return 1
}

cmd_down() {
  local k
  if any_host_up; then destroy_with_vfleet; fi
  sweep_instances
  for k in $(known_hosts_numbers); do stop_host "$k"; done
}

cmd_status() {
  local k pid any='' host_port
  for k in $(known_hosts_numbers); do
    any=1
    pid="$(running_pid "$k")"
    # The port the host was last started with, which LAB_PORT may no longer say.
    host_port="$(sed -n 's/^Port //p' "$(host_dir "$k")/sshd_config" 2>/dev/null)"
    printf '%-8s %s:%s  ' "$(host_name "$k")" "$(host_address "$k")" "${host_port:-$port}"
    if [ -n "$pid" ]; then echo "running (pid $pid)"; else echo stopped; fi
  done
  [ -n "$any" ] || echo "no lab in $lab_dir (scripts/lab.sh up)"
}

# Fails, naming the holder, when something other than this lab's sshd listens on the port on
# one of the lab's addresses or on a wildcard address.
check_port_free() { # host count
  local ours='' k line local_addr holder
  for k in $(known_hosts_numbers); do ours="$ours $(running_pid "$k")"; done
  while read -r line; do
    [ -n "$line" ] || continue
    local_addr="$(awk '{ print $4 }' <<<"$line")"
    holder="$(grep -o 'pid=[0-9]*' <<<"$line" | head -n1 | cut -d= -f2)"
    case " $ours " in *" $holder "*) [ -n "$holder" ] && continue ;; esac
    case "$local_addr" in
      "0.0.0.0:$port" | "*:$port" | "[::]:$port") ;;
      127.0.0.*)
        k="${local_addr#127.0.0.}"
        k="${k%%:*}"
        int_between "$k" 2 $(($1 + 1)) || continue
        ;;
      *) continue ;;
    esac
    die "port $port is already in use on $local_addr ($(grep -o 'users:.*' <<<"$line" || echo 'another process')); set LAB_PORT to a free port"
  done < <(ss -Hltnp "sport = :$port")
}

write_sshd_config() { # host number → prints the config
  local dir
  dir="$(host_dir "$1")"
  cat <<EOF
# Generated by scripts/lab.sh for lab host $(host_name "$1"); rewritten by every \`up\`.
Port $port
ListenAddress $(host_address "$1")
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $lab_dir/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
# The lab folder lives in a checkout whose modes sshd would otherwise judge.
StrictModes no
MaxSessions 10
UsePAM no
LogLevel VERBOSE
PrintMotd no
# bash sources ~/.bashrc for every command sshd starts unless it believes it is nested; a slow
# .bashrc (pyenv init, ~120 ms here) would slow every command vfleet runs.
SetEnv SHLVL=1
# For copying images and disks over SFTP; internal, so no sftp-server binary is needed.
Subsystem sftp internal-sftp
EOF
}

wait_listening() { # host number
  local address waited=0
  address="$(host_address "$1")"
  until ss -Hltn "sport = :$port" | awk '{ print $4 }' | grep -qxF "$address:$port"; do
    [ $waited -lt 100 ] || die "$(host_name "$1"): sshd does not listen on $address:$port; its log:
$(tail -n 20 "$(host_dir "$1")/sshd.log" 2>/dev/null)"
    sleep 0.1
    waited=$((waited + 1))
  done
}

start_host() { # host number
  local k="$1" dir config pid
  dir="$(host_dir "$k")"
  mkdir -p "$dir/data"
  [ -f "$dir/ssh_host_ed25519_key" ] ||
    ssh-keygen -q -t ed25519 -N '' -C "$(host_name "$k")" -f "$dir/ssh_host_ed25519_key"
  config="$(write_sshd_config "$k")"
  pid="$(running_pid "$k")"
  if [ -n "$pid" ] && [ "$config" = "$(cat "$dir/sshd_config")" ]; then
    echo "$(host_name "$k") already up on $(host_address "$k"):$port (pid $pid)"
    return 0
  fi
  [ -z "$pid" ] || stop_host "$k"
  printf '%s\n' "$config" >"$dir/sshd_config"
  "$sshd" -t -f "$dir/sshd_config" || die "$(host_name "$k"): sshd rejects $dir/sshd_config"
  # sshd must be started by its absolute path (it re-executes itself per connection).
  "$sshd" -f "$dir/sshd_config" -E "$dir/sshd.log"
  wait_listening "$k"
  echo "started $(host_name "$k") on $(host_address "$k"):$port (pid $(running_pid "$k"))"
}

# --- facts of this machine, which every lab host reports as its own --------------------------

lscpu_field() { LC_ALL=C lscpu | sed -n "s/^$1:[[:space:]]*//p" | head -n1; }

collect_facts() {
  cpu_sockets="$(lscpu_field 'Socket(s)')"
  cpu_cores="$(lscpu_field 'Core(s) per socket')"
  cpu_threads="$(lscpu_field 'Thread(s) per core')"
  memory_mib=$(($(awk '/^MemTotal:/ { print $2 }' /proc/meminfo) / 1024))
  # The size, not what is free: free space changes with every write and would change the spec.
  disk_gib="$(df -BG --output=size "$lab_dir" | tail -n1 | tr -dc '0-9')"
  # shellcheck disable=SC1091
  os_family="$(. /etc/os-release && echo "${ID:-}")"
  # shellcheck disable=SC1091
  os_release="$(. /etc/os-release && echo "${VERSION_ID:-}")"
  os_kernel="$(uname -r)"
  os_arch="$(uname -m)"
  local v
  for v in cpu_sockets cpu_cores cpu_threads memory_mib disk_gib; do
    int_between "${!v}" 1 999999999 || die "cannot read this machine's $v (got '${!v}')"
  done
  if [ -z "$os_family" ] || [ -z "$os_release" ]; then
    die "cannot read ID and VERSION_ID from /etc/os-release"
  fi
}

# A value of the images' manifest (a flat "name": "value" line).
manifest_field() {
  sed -n "s/^ *\"$1\": \"\\([^\"]*\\)\",\\{0,1\\}\$/\\1/p" "$images_dir/manifest.json" | sed -n 1p
}

write_spec() { # host count
  local count="$1" spec_dir k dir user identity schema image_os_family image_os_release
  spec_dir="$(dirname "$spec")"
  identity="$(realpath -m --relative-to="$spec_dir" "$lab_dir/client_ed25519")"
  schema="$(realpath -m --relative-to="$spec_dir" "$repo/schemas/fleet.schema.json")"
  user="$(id -un)"
  [[ $user =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] || die "the user name '$user' is not one a spec accepts"
  image_os_family="$(manifest_field osId)"
  image_os_release="$(manifest_field osVersionId)"
  mkdir -p "$spec_dir"
  # vfleet reads image files only inside the spec's repository (or VFLEET_ALLOW_PATHS): the
  # images are linked (copied across file systems) next to the spec, in .lab-images/.
  mkdir -p "$spec_dir/.lab-images"
  for f in busybox-rootfs.tar.gz vmlinuz initrd.img; do
    ln -f "$images_dir/$f" "$spec_dir/.lab-images/$f" 2>/dev/null || cp -f "$images_dir/$f" "$spec_dir/.lab-images/$f"
  done
  {
    cat <<EOF
# yaml-language-server: \$schema=$schema
#
# Generated by \`scripts/lab.sh up $count\`: do not edit, run it again (docs/lab.md). Each host is
# an sshd of this machine on its own loopback address, so each reports this machine's facts;
# they share its CPUs, memory and disk, which is fine for a lab and nothing else.
apiVersion: vfleet/v1
kind: Fleet
metadata:
  name: ssh-lab
  description: $count sshd hosts on this machine's loopback addresses (scripts/lab.sh)

spec:
  hosts:
EOF
    for k in $(seq "$count"); do
      dir="$(host_dir "$k")"
      cat <<EOF
    - name: $(host_name "$k")
      engine: ssh
      address: $(host_address "$k")
      port: $port
      user: $user
      identityFile: $identity
      hostKey: $(cut -d' ' -f1,2 "$dir/ssh_host_ed25519_key.pub")
      dataDir: $dir/data
      labels: { rack: r$k }
      cpu: { sockets: $cpu_sockets, coresPerSocket: $cpu_cores, threadsPerCore: $cpu_threads }
      memoryMiB: $memory_mib
      diskGiB: $disk_gib
      os: { family: $os_family, release: "$os_release", kernel: $os_kernel, arch: $os_arch }
      runs: [vm, container]
EOF
    done
    cat <<EOF

  # With three hosts or more any one may fail: the protected groups (failover) have standby room
  # reserved, and a running \`vfleet controller\` restarts them there (docs/controller.md). Two
  # hosts of this machine's size have no room to spare.
  failover: { tolerate: $((count >= 3 ? 1 : 0)) }

  images:
    # Built by scripts/build-test-images.sh; the contract of its files is in docs/lab.md.
    - name: busybox
      kind: container
      os: { family: $image_os_family, release: "$image_os_release", arch: $os_arch }
      source: { rootfs: .lab-images/busybox-rootfs.tar.gz }
      command: ["/bin/sh", "-c", "echo vfleet-sandbox-up; exec sleep 2147483647"]
    - name: tiny-vm
      kind: vm
      os: { family: $image_os_family, release: "$image_os_release", arch: $os_arch }
      source:
        kernel: .lab-images/vmlinuz
        initrd: .lab-images/initrd.img
        cmdline: $(manifest_field cmdline)

  instances:
    - name: web
      image: busybox
      replicas: 2
      resources: { vcpus: 1, memoryMiB: 64, diskGiB: 1 }
      placement: { spread: rack }
      failover: true
    - name: vm
      image: tiny-vm
      replicas: 1
      resources: { vcpus: 1, memoryMiB: 128, diskGiB: 1 }
      failover: { priority: high }
EOF
  } >"$spec.tmp"
  mv -f "$spec.tmp" "$spec"
}

# Proves what the spec promises: each host takes the client key and shows the pinned host key.
check_logins() { # host count
  local k
  command -v ssh >/dev/null 2>&1 || {
    echo "(no ssh client: logins not checked; apt-get install openssh-client)"
    return 0
  }
  for k in $(seq "$1"); do
    ssh -F /dev/null -i "$lab_dir/client_ed25519" -o IdentitiesOnly=yes -o IdentityAgent=none \
      -o UserKnownHostsFile="$lab_dir/known_hosts" -o StrictHostKeyChecking=yes -o BatchMode=yes \
      -o ConnectTimeout=10 -p "$port" "$(id -un)@$(host_address "$k")" true ||
      die "$(host_name "$k"): ssh login with the client key failed; see $(host_dir "$k")/sshd.log"
  done
  echo "ssh logins checked on $1 host(s)"
}

cmd_up() {
  local count="${1:-3}" k
  int_between "$count" 1 $max_hosts || die "N must be a number from 1 to $max_hosts, not '$count'"
  need sshd openssh-server
  need ssh-keygen openssh-client
  need ss iproute2
  need lscpu util-linux
  sshd="$(command -v sshd)"
  sshd="$(readlink -f "$sshd")"
  check_path "$lab_dir" LAB_DIR
  check_path "$images_dir" VFLEET_TEST_IMAGES
  check_path "$spec" LAB_SPEC

  "$repo/scripts/build-test-images.sh" --out "$images_dir"

  mkdir -p "$lab_dir/hosts"
  # sshd as root checks for its privilege separation folder (the sshd service makes it).
  if [ "$(id -u)" -eq 0 ]; then mkdir -p /run/sshd && chmod 0755 /run/sshd; fi
  for k in $(known_hosts_numbers); do [ "$k" -le "$count" ] || stop_host "$k"; done
  check_port_free "$count"

  [ -f "$lab_dir/client_ed25519" ] ||
    ssh-keygen -q -t ed25519 -N '' -C vfleet-lab-client -f "$lab_dir/client_ed25519"
  cp "$lab_dir/client_ed25519.pub" "$lab_dir/authorized_keys"
  for k in $(seq "$count"); do start_host "$k"; done
  for k in $(seq "$count"); do
    printf '[%s]:%s %s\n' "$(host_address "$k")" "$port" \
      "$(cut -d' ' -f1,2 "$(host_dir "$k")/ssh_host_ed25519_key.pub")"
  done >"$lab_dir/known_hosts"

  collect_facts
  write_spec "$count"
  echo "wrote $spec"
  if [ -f "$repo/dist/src/cli/main.js" ]; then
    node "$repo/bin/vfleet.js" validate "$spec"
  else
    echo "(vfleet is not built: npm run build, then node bin/vfleet.js validate $spec)"
  fi
  check_logins "$count"
  cat <<EOF
lab up: $count host(s) on 127.0.0.2..$(host_address "$count") port $port
  ssh -i $lab_dir/client_ed25519 -o UserKnownHostsFile=$lab_dir/known_hosts -p $port $(id -un)@127.0.0.2
EOF
}

case "${1:-}" in
  up)
    [ $# -le 2 ] || die "usage: scripts/lab.sh up [N]"
    cmd_up "${2:-3}"
    ;;
  down) cmd_down ;;
  status) cmd_status ;;
  -h | --help | help) usage ;;
  *)
    usage >&2
    exit 2
    ;;
esac
