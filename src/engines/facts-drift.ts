// Where a real host's own facts disagree with what the spec says of it. The scheduler trusts the
// spec (plans must not depend on a host answering), so these are warnings: `vfleet status` and
// `vfleet plan` print them, and the operator fixes whichever side is wrong.
import type { Host } from '../model/fleet.js';
import type { HostFacts } from './host-engine.js';

/** /proc/meminfo's MemTotal is below the installed memory (the kernel keeps some): 5% slack. */
const SLACK = 1.05;

export function factsDrift(host: Host, facts: HostFacts): string[] {
  const warnings: string[] = [];
  const say = (text: string) => warnings.push(`${host.name}: ${text}`);
  const s = host.cpu;
  const f = facts.cpu;
  if (
    s.sockets !== f.sockets ||
    s.coresPerSocket !== f.coresPerSocket ||
    s.threadsPerCore !== f.threadsPerCore
  ) {
    say(
      `the spec says ${s.sockets} socket(s) × ${s.coresPerSocket} cores × ${s.threadsPerCore} threads, the host has ${f.sockets} × ${f.coresPerSocket} × ${f.threadsPerCore} (core licenses and capacity follow the spec)`,
    );
  }
  if (host.memoryMiB > facts.memoryMiB * SLACK) {
    say(
      `the spec says ${host.memoryMiB} MiB of memory, the host has ${facts.memoryMiB} MiB: vfleet may place more than fits`,
    );
  }
  if (facts.diskGiB > 0 && host.diskGiB > facts.diskGiB * SLACK) {
    say(
      `the spec says ${host.diskGiB} GiB of disk, the file system of ${host.dataDir} has ${facts.diskGiB} GiB`,
    );
  }
  const os = host.os;
  const real = facts.os;
  if (os.family !== real.family || os.release !== real.release || os.arch !== real.arch) {
    say(
      `the spec says ${os.family} ${os.release} ${os.arch}, the host runs ${real.family} ${real.release} ${real.arch}: sandboxes share the host's kernel and userland, so containers are placed on a wrong promise`,
    );
  }
  if (os.kernel !== undefined && real.kernel !== undefined && os.kernel !== real.kernel) {
    say(`the spec says kernel ${os.kernel}, the host runs ${real.kernel}`);
  }
  if (host.runs.includes('vm')) {
    if (!facts.runs.includes('vm')) {
      say('the spec lets it run VMs, but qemu-system-x86_64 is not installed there');
    } else if (facts.kvm === false) {
      say('/dev/kvm is not usable: VMs run under emulation (TCG), many times slower');
    }
  }
  if (host.runs.includes('container')) {
    if (!facts.runs.includes('container')) {
      say('the spec lets it run containers, but the host cannot start sandboxes (unshare, chroot)');
    } else if (facts.sandboxLimits && !(facts.sandboxLimits.memory && facts.sandboxLimits.cpu)) {
      const missing = [
        ...(facts.sandboxLimits.memory ? [] : ['memory']),
        ...(facts.sandboxLimits.cpu ? [] : ['cpu']),
      ];
      say(
        `sandbox ${missing.join(' and ')} limits are not enforced (no cgroup v2 ${missing.join('/')} controller)`,
      );
    }
  }
  return warnings;
}
