// The vfleet agent of a real host (docs/controller.md, "The agent on real hosts"): a fixed shell
// script (this text, never built from values) kept on the host as
// `<dataDir>/bin/vfleet-agent-<sha256 prefix>.sh`, checked by its sha256 before first use like the
// sandbox launcher (host-helper.ts). Three roles, each a subcommand:
//
// - `renew`, run by every controller each tick over the transport: records a fresh renewal
//   (`agent/renewal`, a token that changes every call), starts the two loops below when they are
//   not running, and answers with the agent's heartbeat, which loops it started, and the
//   instances the watchdog has stopped since the last answer;
// - `agent`, a loop (the Proxmox LRM's part): each turn it notes when it last saw the renewal
//   change, on the host's monotonic clock (/proc/uptime: no wall clock, no skew with the
//   controller), writes the deadline that renewal gives (`agent/deadline`: seen + ttl) and a
//   heartbeat that changes every turn (`agent/beat`) — the controller renews the host's lease in
//   Redis only when the beat moved, so a hung agent makes a lost host;
// - `watchdog`, a loop apart from the agent (the watchdog-mux and softdog's part, so a hung or
//   stopped agent is still fenced): once the deadline has passed — or the deadline has not moved
//   for a ttl — it SIGKILLs every instance process of the host (QEMU by its pidfile, a sandbox's
//   PID 1 and its `unshare`) and keeps doing so until a renewal moves the deadline again, and
//   lists what it stopped in `agent/fenced` for the next `renew` to report;
// - `disarm`: a controller that stops cleanly and sees no other controller renewing (each
//   renewer touches `agent/feeders/<id>`) stops both loops, so a control plane shut down on
//   purpose does not stop the fleet; instances are left as they are.
//
// Every value arrives as an argument and is only ever expanded in double quotes; paths are made
// from the data folder the engine checked (host-layout.ts). A loop keeps running only while its
// pidfile holds its own pid, so a second copy (two renewals at once, a new version) ends the
// older one at its next turn.
import { createHash } from 'node:crypto';
import { VfleetError } from '../../model/errors.js';
import { run, type Transport } from '../../transport/transport.js';
import { installHostScript } from './host-helper.js';

export const AGENT_SCRIPT = `#!/bin/sh
# vfleet-agent, format 2. Usage:
#   vfleet-agent renew DATADIR TTL_MS TOKEN FEEDER [ACK [STARTED_ACK]]   a controller's renewal
#                  (prints a report; ACK, STARTED_ACK: the sums of the fenced and started lines it
#                  has acted on)
#   vfleet-agent agent DATADIR TTL_MS                the agent loop (started by renew)
#   vfleet-agent watchdog DATADIR TTL_MS             the watchdog loop (started by renew)
#   vfleet-agent disarm DATADIR TTL_MS FEEDER        stop both loops unless another feeder renews
# See src/engines/real/host-agent.ts.
set -u
role=$1
data=$2
ttl=$(( $3 / 10 ))
dir=$data/agent
nl='
'
[ "$ttl" -ge 10 ] || ttl=10

now() { # sets t: centiseconds since boot: monotonic, the host's own
  read -r up _ </proc/uptime
  up=\${up%.*}\${up#*.}
  while [ "\${up#0}" != "$up" ]; do up=\${up#0}; done
  t=\${up:-0}
}

get() { # FILE: sets v to its first line, empty when it is not there (builtins only: the loops
  # below turn several times a second and fork nothing but mv and sleep)
  v=
  { read -r v <"$1"; } 2>/dev/null
  return 0
}

mine() { # PIDFILE ROLE: the pidfile names a live loop of this script, this role, this folder
  p=$(cat "$1" 2>/dev/null) || return 1
  case $p in '' | *[!0-9]*) return 1 ;; esac
  args=$(tr '\\0' '\\n' <"/proc/$p/cmdline" 2>/dev/null) || return 1
  case "$args$nl" in *"$nl$0$nl$2$nl$data$nl"*) return 0 ;; esac
  return 1
}

put() { # FILE VALUE: written whole (a reader never sees half)
  printf '%s\\n' "$2" >"$1.tmp.$$" && mv -f "$1.tmp.$$" "$1"
}

tick=$(( ttl / 10 ))
[ "$tick" -ge 10 ] || tick=10
[ "$tick" -le 100 ] || tick=100
if [ "$tick" -eq 100 ]; then nap=1; else nap=0.$(printf '%02d' "$tick"); fi

alive() { # PID MARKER: alive (not a zombie) and its command line names MARKER
  case $1 in '' | *[!0-9]*) return 1 ;; esac
  tr '\\0' '\\n' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$2"
}

fence() { # SIGKILL every instance process of the host; print the names
  for idir in "$data"/instances/*/; do
    [ -d "$idir" ] || continue
    idir=\${idir%/}
    name=\${idir##*/}
    hit=
    q=$(cat "$idir/qemu.pid" 2>/dev/null) || q=
    if alive "$q" "$idir/qemu.pid"; then kill -9 "$q" 2>/dev/null && hit=1; fi
    s=$(cat "$idir/sandbox.pid" 2>/dev/null) || s=
    if alive "$s" "$idir/rootfs"; then
      # killed if any of its processes was: a PID 1 may exit by itself once its children die
      for c in $(cat "/proc/$s/task/$s/children" 2>/dev/null); do kill -9 "$c" 2>/dev/null && hit=1; done
      kill -9 "$s" 2>/dev/null && hit=1
    fi
    [ -z "$hit" ] || printf '%s\\n' "$name"
  done
}

case $role in
renew)
  token=$4
  feeder=$5
  ack=\${6-}
  started_ack=\${7-}
  mkdir -p "$dir/feeders" || exit 1
  put "$dir/renewal" "$token" || exit 1
  : >"$dir/feeders/$feeder"
  # The loops this host had to start stay reported, like the fenced instances below, until a
  # controller acknowledges exactly that report: an answer lost on the way loses no restart.
  if [ -n "$started_ack" ] && [ -s "$dir/started" ]; then
    sum=$(cksum <"$dir/started")
    [ "\${sum%% *}" != "$started_ack" ] || rm -f "$dir/started"
  fi
  for r in watchdog agent; do
    if ! mine "$dir/$r.pid" "$r"; then
      # a background job is no group leader, so setsid does not fork: $! is the loop
      setsid /bin/sh "$0" "$r" "$data" "$3" </dev/null >>"$dir/$r.log" 2>&1 &
      put "$dir/$r.pid" "$!"
      printf '%s %s\n' "$r" "$!" >>"$dir/started"
    fi
  done
  echo "beat $(cat "$dir/beat" 2>/dev/null)"
  if [ -s "$dir/started" ]; then
    sum=$(cksum <"$dir/started")
    echo "started \${sum%% *} $(cut -d ' ' -f 1 "$dir/started" | sort -u | tr '\n' ' ')"
  else
    echo "started"
  fi
  # What the watchdog killed stays reported until a controller acknowledges having acted on
  # exactly that (an answer lost on the way loses nothing).
  if [ -s "$dir/fenced" ]; then
    sum=$(cksum <"$dir/fenced")
    sum=\${sum%% *}
    if [ "$sum" = "$ack" ]; then
      mv -f "$dir/fenced" "$dir/fenced.acked"
      again=$(cksum <"$dir/fenced.acked")
      [ "\${again%% *}" = "$ack" ] || cat "$dir/fenced.acked" >>"$dir/fenced"
    else
      echo "fenced $sum $(sort -u "$dir/fenced" | tr '\\n' ' ')"
    fi
  fi
  ;;
agent)
  mkdir -p "$dir"
  put "$dir/agent.pid" "$$"
  n=0
  last=
  now
  seen=$t
  while get "$dir/agent.pid" && [ "$v" = "$$" ]; do
    now
    get "$dir/renewal"
    r=$v
    if [ "$r" != "$last" ]; then
      last=$r
      seen=$t
    fi
    n=$((n + 1))
    put "$dir/deadline" "$((seen + ttl))"
    put "$dir/beat" "$$.$n"
    sleep "$nap"
  done
  ;;
watchdog)
  mkdir -p "$dir"
  put "$dir/watchdog.pid" "$$"
  last=
  now
  moved=$t
  while get "$dir/watchdog.pid" && [ "$v" = "$$" ]; do
    now
    get "$dir/deadline"
    d=$v
    case $d in '' | *[!0-9]*) d= ;; esac
    if [ "$d" != "$last" ]; then
      last=$d
      moved=$t
    fi
    # no later than a ttl after the deadline last moved (an agent that stopped, or none yet)
    limit=$((moved + ttl))
    [ -z "$d" ] || [ "$d" -ge "$limit" ] || limit=$d
    if [ "$t" -ge "$limit" ]; then
      fence >>"$dir/fenced"
    fi
    sleep "$nap"
  done
  ;;
disarm)
  feeder=$4
  rm -f "$dir/feeders/$feeder"
  secs=$(( (ttl + 99) / 100 ))
  for f in "$dir"/feeders/*; do
    [ -e "$f" ] || continue
    if [ $(( $(date +%s) - $(stat -c %Y "$f") )) -le "$secs" ]; then
      echo "others"
      exit 0
    fi
  done
  for r in agent watchdog; do
    if mine "$dir/$r.pid" "$r"; then
      p=$(cat "$dir/$r.pid")
      rm -f "$dir/$r.pid"
      kill "$p" 2>/dev/null
    fi
  done
  echo "disarmed"
  ;;
*)
  echo "vfleet-agent: unknown role $role" >&2
  exit 2
  ;;
esac
`;

export const AGENT_SHA256 = createHash('sha256').update(AGENT_SCRIPT).digest('hex');

/** What a host's agent answered a renewal. */
export interface AgentReport {
  /** The agent's heartbeat ("pid.turn"): it moves every turn of a live agent, else it stands. */
  readonly beat: string;
  /**
   * The loops the host had to start (none were running: first contact, a crash, a reboot) since
   * a controller last acknowledged them (`startedSum`, the next renewal's `startedAck`).
   */
  readonly started: readonly string[];
  readonly startedSum?: string;
  /** The instances the watchdog has SIGKILLed and no controller has acknowledged yet. */
  readonly fenced: readonly string[];
  /** What acknowledges `fenced` (the next renewal's `ack`), when there is any. */
  readonly fencedSum?: string;
}

const NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export function parseAgentReport(host: string, text: string): AgentReport {
  let beat: string | undefined;
  let started: string[] = [];
  let startedSum: string | undefined;
  let fenced: string[] = [];
  let fencedSum: string | undefined;
  for (const line of text.split('\n')) {
    const [word, ...rest] = line.trim().split(/\s+/);
    if (word === 'beat') beat = rest.join(' ');
    else if (word === 'started') {
      started = rest.filter((r) => r === 'agent' || r === 'watchdog');
      startedSum = rest.find((r) => /^\d+$/.test(r));
    } else if (word === 'fenced' && rest.length > 0) {
      fencedSum = rest[0];
      fenced = rest.slice(1).filter((n) => NAME.test(n));
    }
  }
  if (beat === undefined) {
    throw new VfleetError('agent-failed', `${host}: the vfleet agent's renewal answered no beat`, {
      retryable: true,
    });
  }
  return {
    beat,
    started,
    fenced,
    ...(startedSum === undefined ? {} : { startedSum }),
    ...(fencedSum === undefined ? {} : { fencedSum }),
  };
}

/** A feeder's id as the host stores it (a file name): a hash of the controller's id. */
export function feederId(controllerId: string): string {
  return createHash('sha256').update(controllerId).digest('hex').slice(0, 16);
}

/** The agent of one real host, as a controller drives it over the host's transport. */
export class HostAgent {
  private installed: Promise<string> | undefined;

  constructor(
    private readonly t: Transport,
    private readonly dataDir: string,
  ) {}

  /** Puts the script on the host unless it is there with the right sha256; returns its path. */
  private script(): Promise<string> {
    this.installed ??= installAgent(this.t, `${this.dataDir}/bin`).catch((e) => {
      this.installed = undefined;
      throw e;
    });
    return this.installed;
  }

  /**
   * One renewal: the agent's loops are started if they are not running. `ack`, `startedAck`:
   * the `fencedSum` and `startedSum` of a report the caller has acted on, which the host then
   * forgets.
   */
  async renew(
    ttlMs: number,
    token: string,
    feeder: string,
    timeoutMs: number,
    ack = '',
    startedAck = '',
  ): Promise<AgentReport> {
    const path = await this.script();
    const out = await run(
      this.t,
      [
        '/bin/sh',
        path,
        'renew',
        this.dataDir,
        String(Math.round(ttlMs)),
        token,
        feeder,
        ack,
        startedAck,
      ],
      { timeoutMs },
    );
    return parseAgentReport(this.t.host, out.toString('utf8'));
  }

  /** Stops the loops unless another feeder renewed within a ttl; true when it did. */
  async disarm(ttlMs: number, feeder: string, timeoutMs: number): Promise<boolean> {
    const path = await this.script();
    const out = await run(
      this.t,
      ['/bin/sh', path, 'disarm', this.dataDir, String(Math.round(ttlMs)), feeder],
      { timeoutMs },
    );
    return out.toString('utf8').trim() === 'disarmed';
  }
}

export function installAgent(t: Transport, binDir: string): Promise<string> {
  return installHostScript(t, binDir, 'vfleet-agent', AGENT_SCRIPT, AGENT_SHA256, 'agent');
}
