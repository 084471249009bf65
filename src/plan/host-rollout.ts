// Which hosts may be drained and patched together (Ganeti's hroller): the hosts to patch in
// waves, each wave within what the failover policy tolerates — `tolerate` failure domains at
// once (one at a time with `tolerate: 0`), a domain being a host (`domain: host`) or the value of
// a label (`domain: rack`) — and each wave checked with the scheduler itself: the fleet with the
// wave's hosts draining must place every instance it places now (docs/patching.md, "Hosts").
// Pure: the same fleet, observation and names give the same waves.
import { type Fleet, failureDomainOf, type Host } from '../model/fleet.js';
import type { ObservedPlacement, Placement } from '../model/placement.js';
import { schedule } from '../scheduler/schedule.js';

export interface HostWave {
  /** The hosts drained, patched and undrained together, in spec order. */
  readonly hosts: readonly string[];
  /** Their failure domains (never more than the policy tolerates; 1 with `tolerate: 0`). */
  readonly domains: readonly string[];
  /**
   * The instances the wave's hosts hold when the rollout is planned (earlier waves' drains may
   * move more onto them before their turn).
   */
  readonly holdsNow: number;
  /**
   * Protected instances with a failover host while the wave is drained, of how many: below the
   * whole when what is left cannot hold every reserve (the wave uses the tolerance up).
   */
  readonly covered: number;
  readonly protected: number;
}

export type HostRollout =
  | { readonly ok: true; readonly waves: readonly HostWave[]; readonly maxDomainsPerWave: number }
  | {
      readonly ok: false;
      /** The host that cannot be drained even alone: what stays, what the others cannot take. */
      readonly host: string;
      readonly unplaceable: readonly string[];
    };

/** Failure domains one wave may take down: the policy's `tolerate`, at least one. */
export function domainsPerWave(fleet: Pick<Fleet, 'failover'>): number {
  return Math.max(1, fleet.failover.tolerate);
}

/**
 * The waves that patch `names` (spec hosts; the order of the spec's hosts, domain by domain).
 * A wave takes up to `domainsPerWave` whole domains; when the scheduler cannot place the
 * instances with all of them draining, fewer domains, then one domain's hosts a few at a time,
 * down to one host; a host that cannot be drained even alone stops the rollout before it starts.
 */
export function planHostRollout(
  fleet: Fleet,
  observed: ObservedPlacement,
  names: readonly string[],
): HostRollout {
  const wanted = new Set(names);
  const byDomain = new Map<string, Host[]>();
  for (const host of fleet.hosts) {
    if (!wanted.has(host.name)) continue;
    const domain = failureDomainOf(fleet, host);
    byDomain.set(domain, [...(byDomain.get(domain) ?? []), host]);
  }
  const unplacedNow = new Set(schedule(fleet, observed).unplaceable.map((u) => u.instance));
  const holds = new Map<string, number>();
  for (const i of observed.instances) holds.set(i.host, (holds.get(i.host) ?? 0) + 1);
  // The placement each tried wave gave: the one taken says its failover coverage.
  const tried = new Map<string, Placement>();
  const lost = (hosts: readonly Host[]): string[] => {
    const names = hosts.map((h) => h.name);
    const placement = drainedPlacement(fleet, observed, names);
    tried.set(names.join(), placement);
    return placement.unplaceable.map((u) => u.instance).filter((i) => !unplacedNow.has(i));
  };
  const wave = (hosts: readonly Host[]): HostWave => {
    const during = tried.get(hosts.map((h) => h.name).join())?.failover;
    return {
      hosts: hosts.map((h) => h.name),
      domains: [...new Set(hosts.map((h) => failureDomainOf(fleet, h)))],
      holdsNow: hosts.reduce((n, h) => n + (holds.get(h.name) ?? 0), 0),
      covered: during?.covered ?? 0,
      protected: during?.protected ?? 0,
    };
  };
  const waves: HostWave[] = [];
  const domains = [...byDomain.values()];
  const most = domainsPerWave(fleet);
  let at = 0;
  while (at < domains.length) {
    let taken = 0;
    for (let k = Math.min(most, domains.length - at); k >= 1; k--) {
      const hosts = domains.slice(at, at + k).flat();
      if (lost(hosts).length === 0) {
        waves.push(wave(hosts));
        taken = k;
        break;
      }
    }
    if (taken > 0) {
      at += taken;
      continue;
    }
    // Not even one whole domain: its hosts in the largest groups that fit, one at least.
    const rest = domains[at] as Host[];
    let from = 0;
    while (from < rest.length) {
      let size = rest.length - from;
      while (size > 1 && lost(rest.slice(from, from + size)).length > 0) size--;
      const hosts = rest.slice(from, from + size);
      const cannot = size === 1 ? lost(hosts) : [];
      if (cannot.length > 0) return { ok: false, host: hosts[0]?.name ?? '', unplaceable: cannot };
      waves.push(wave(hosts));
      from += size;
    }
    at += 1;
  }
  return { ok: true, waves, maxDomainsPerWave: most };
}

/**
 * The instances the scheduler cannot place with `hosts` draining that it places now (those in
 * `unplacedNow`, computed when not given, are not counted): empty when the hosts may drain
 * together. The rollout asks it again before each wave, of the state as it is then.
 */
export function drainLoses(
  fleet: Fleet,
  observed: ObservedPlacement,
  hosts: readonly string[],
  unplacedNow: ReadonlySet<string> = new Set(
    schedule(fleet, observed).unplaceable.map((u) => u.instance),
  ),
): string[] {
  return drainedPlacement(fleet, observed, hosts)
    .unplaceable.map((u) => u.instance)
    .filter((i) => !unplacedNow.has(i));
}

/** schedule() of the fleet with `hosts` draining. */
function drainedPlacement(
  fleet: Fleet,
  observed: ObservedPlacement,
  hosts: readonly string[],
): Placement {
  const draining = new Set(hosts);
  const drained: Fleet = {
    ...fleet,
    hosts: fleet.hosts.map((h) => (draining.has(h.name) ? { ...h, drain: true } : h)),
  };
  return schedule(drained, observed);
}
