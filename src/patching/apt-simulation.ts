// What `apt-get -s install …` says it would do, read from its output: one line per dpkg action,
// a format apt has kept since its first releases (apt-pkg/algorithms.cc, pkgSimulate):
//
//   Inst vfleet-demo-tls [1.0-1] (1.0-2 127.0.0.1 [all])   an upgrade (or a downgrade): [from] (to …)
//   Inst vfleet-demo-lib (1.0-1 127.0.0.1 [all])           a new package
//   Remv vfleet-demo-old [0.9-1]                           a removal (Purg: with its conffiles)
//   Conf vfleet-demo-tls (1.0-2 127.0.0.1 [all])           a configure step (nothing new)
//
// Pure: the caller runs apt-get. A patch uses it to know, before anything is installed, which
// packages would change, and to refuse a removal or a downgrade rather than find it afterwards.
import { compareDebianVersions } from './debian-version.js';

export interface SimulatedChange {
  readonly package: string;
  /** The installed version, or null for a package apt would newly install. */
  readonly from: string | null;
  readonly to: string;
}

export interface AptSimulation {
  /** Packages apt would install or upgrade, in its order. */
  readonly installs: readonly SimulatedChange[];
  /** Of those, the ones whose new version is lower than the installed one. */
  readonly downgrades: readonly SimulatedChange[];
  /** Packages apt would remove (or purge), with the installed version when it says it. */
  readonly removals: ReadonlyArray<{ readonly package: string; readonly from: string | null }>;
}

const INST = /^Inst (\S+) (?:\[([^\]\s]+)\] )?\((\S+)[ )]/;
const REMOVE = /^(?:Remv|Purg) (\S+)(?: \[([^\]\s]+)\])?/;

export function parseAptSimulation(output: string): AptSimulation {
  const installs: SimulatedChange[] = [];
  const removals: Array<{ package: string; from: string | null }> = [];
  for (const line of output.split('\n')) {
    const inst = INST.exec(line);
    if (inst) {
      installs.push({ package: inst[1] as string, from: inst[2] ?? null, to: inst[3] as string });
      continue;
    }
    const remove = REMOVE.exec(line);
    if (remove) removals.push({ package: remove[1] as string, from: remove[2] ?? null });
  }
  const downgrades = installs.filter(
    (c) => c.from !== null && compareDebianVersions(c.to, c.from) < 0,
  );
  return { installs, downgrades, removals };
}
