// A sandbox's root as apt-patch.ts patches it: programs run chrooted into the instance's rootfs,
// inside pid, mount, uts and ipc namespaces of their own made for the one command —
//
//   unshare --pid --fork --kill-child --mount --uts --ipc
//     /bin/sh <dataDir>/bin/vfleet-chroot-<sha>.sh <rootfs> -- env -i <ROOT_ENV> <program…>
//
// so that the rootfs' own dpkg database, apt configuration and sources are the ones used, as in
// the sandbox itself, while:
//
// - /proc (of the new pid namespace) and a private /dev/pts are mounted inside the rootfs in the
//   new mount namespace only, and vanish with it: apt and dpkg expect both, and nothing is left
//   mounted in the rootfs (or seen by the running sandbox, whose mounts are its own);
// - anything a maintainer script starts dies with the command (`--kill-child`: the command is
//   PID 1 of its pid namespace), besides policy-rc.d denying service starts (apt-patch.ts);
// - the network is the host's: the sandbox's own namespace has none (sandbox-driver.ts), and apt
//   needs the mirror the host reaches.
//
// The helper is a fixed script like the launcher (host-helper.ts): uploaded once, named and
// checked by its sha256, every value an argument expanded only inside double quotes.
import { createHash } from 'node:crypto';
import type { Transport } from '../../transport/transport.js';
import { type InstanceRoot, ROOT_ENV } from './apt-patch.js';
import { installHostScript } from './host-helper.js';

export const CHROOT_SCRIPT = `#!/bin/sh
# vfleet-chroot, format 1. Usage: vfleet-chroot ROOT -- PROGRAM [ARG...]
# PID 1 of fresh pid and mount namespaces (unshare --pid --fork --kill-child --mount), started by
# vfleet: mounts /proc and a private /dev/pts inside ROOT in this mount namespace only, then runs
# PROGRAM chrooted into ROOT. See src/engines/real/sandbox-patch.ts.
set -eu
root=$1
shift
if [ "\${1-}" = -- ]; then shift; fi
mount -t proc proc "$root/proc"
if [ -d "$root/dev/pts" ]; then
  mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$root/dev/pts" 2>/dev/null || true
fi
exec chroot "$root" "$@"
`;

export const CHROOT_SHA256 = createHash('sha256').update(CHROOT_SCRIPT).digest('hex');

export function installChrootHelper(t: Transport, binDir: string): Promise<string> {
  return installHostScript(
    t,
    binDir,
    'vfleet-chroot',
    CHROOT_SCRIPT,
    CHROOT_SHA256,
    'chroot helper',
  );
}

/** The root of a sandbox whose rootfs is `rootfs` on the host `t` reaches. */
export function sandboxRoot(
  t: Transport,
  host: string,
  instance: string,
  rootfs: string,
  helper: string,
): InstanceRoot {
  return {
    host,
    instance,
    startsServices: false,
    exec: (argv, options) =>
      t.exec(
        [
          'unshare',
          '--pid',
          '--fork',
          '--kill-child',
          '--mount',
          '--uts',
          '--ipc',
          '/bin/sh',
          helper,
          rootfs,
          '--',
          'env',
          '-i',
          ...ROOT_ENV,
          ...argv,
        ],
        { timeoutMs: options.timeoutMs },
      ),
  };
}
