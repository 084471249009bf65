// vfleet's one host-side helper: a fixed script (this text, never built from values), stored on
// the host as `<dataDir>/bin/vfleet-launch-<sha256 prefix>.sh`, so a new version is a new file
// and an altered file is noticed (its sha256 is checked before first use). It starts a program
// detached from the caller, with its pid in a file and its output in a log, optionally inside a
// cgroup, before the program runs, so not even its first child escapes the cgroup. Every value
// arrives as an argument and is only ever expanded inside double quotes: the shell never parses
// one. The program's own argument vector is passed on with "$@", byte for byte.
import { createHash } from 'node:crypto';
import { VfleetError } from '../../model/errors.js';
import type { Transport } from '../../transport/transport.js';
import { mkdirs, sha256Of } from './host-commands.js';

export const LAUNCH_SCRIPT = `#!/bin/sh
# vfleet-launch, format 1. Usage: vfleet-launch PIDFILE LOG CGROUP|- -- PROGRAM [ARG...]
# Started by vfleet under \`setsid --fork\`; see src/engines/real/host-helper.ts.
set -eu
pidfile=$1
log=$2
cgroup=$3
shift 3
if [ "\${1-}" = -- ]; then shift; fi
exec </dev/null >>"$log" 2>&1
if [ "$cgroup" != - ]; then
  echo "$$" >"$cgroup/cgroup.procs"
fi
echo "$$" >"$pidfile.tmp"
mv -f "$pidfile.tmp" "$pidfile"
exec "$@"
`;

export const LAUNCH_SHA256 = createHash('sha256').update(LAUNCH_SCRIPT).digest('hex');

/** Puts the helper on the host unless it is there with the right sha256; returns its path. */
export function installLaunchHelper(t: Transport, binDir: string): Promise<string> {
  return installHostScript(t, binDir, 'vfleet-launch', LAUNCH_SCRIPT, LAUNCH_SHA256, 'helper');
}

/**
 * Puts one of vfleet's fixed host-side scripts at `<binDir>/<stem>-<sha256 prefix>.sh` unless it
 * is there with the right sha256 (so a new version is a new file and an altered one is noticed);
 * returns its path.
 */
export async function installHostScript(
  t: Transport,
  binDir: string,
  stem: string,
  text: string,
  sha256: string,
  what: string,
): Promise<string> {
  const path = `${binDir}/${stem}-${sha256.slice(0, 16)}.sh`;
  if ((await sha256Of(t, path)) === sha256) return path;
  await mkdirs(t, binDir);
  await t.writeFile(path, text, 0o755);
  if ((await sha256Of(t, path)) !== sha256) {
    throw new VfleetError('helper-corrupt', `${t.host}: ${path} does not hold vfleet's ${what}`);
  }
  return path;
}
