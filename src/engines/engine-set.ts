// The engines of one fleet, built from its spec: the one place an engine is chosen by the host's
// `engine` field. What refresh needs of all hosts at once comes from here in batches (the
// embedded hosts in two Redis pipelines, the real ones listed side by side), and the faults an
// operator injects on purpose are operations here, refused where the engine cannot take them.
import type { Redis } from 'ioredis';
import { ENGINE_CAPABILITIES, type EngineCapabilities } from '../model/engine-capabilities.js';
import { VfleetError } from '../model/errors.js';
import type { Fleet, Host } from '../model/fleet.js';
import type { InstanceStatus } from '../model/observed.js';
import { openTransport } from '../transport/open-transport.js';
import { withCommandTimeout } from '../transport/command-limits.js';
import type { Transport } from '../transport/transport.js';
import {
  EmbeddedEngine,
  embeddedListing,
  hostIsDown,
  instancesAt,
  setHostDown,
} from './embedded/embedded-engine.js';
import { factsDrift } from './facts-drift.js';
import type { EngineInstance, HostEngine } from './host-engine.js';
import { RealEngine, type RealEngineOptions } from './real/real-engine.js';

export interface EngineSetOptions {
  /** The fleet's Redis: where the embedded hosts live. */
  readonly redis: Redis;
  /** Embedded hosts: how long an instance takes to boot, ms. */
  readonly bootLatencyMs: number;
  /** Embedded hosts: the fleet's current-plan key, checked in the same step as a create. */
  readonly currentPlanKey: string;
  /** Real hosts: every host command ends within this (a hung one is killed and retried). */
  readonly commandTimeoutMs: number;
  readonly real: RealEngineOptions;
}

/** What one host holds, by instance name; `status` where the host reports it in its listing. */
export interface HostListing {
  readonly names: ReadonlySet<string>;
  readonly status?: ReadonlyMap<string, Exclude<InstanceStatus, 'failed'>>;
}

/** Every host's listing at one moment (null: the host did not answer), and their records. */
export interface FleetSurvey {
  readonly listings: ReadonlyMap<string, HostListing | null>;
  /** The records of the named instances as their hosts have them (absent ones left out). */
  describe(
    wanted: ReadonlyArray<{ readonly host: string; readonly name: string }>,
  ): Promise<Array<{ host: string; instance: EngineInstance }>>;
}

/** A fault an operator injects on purpose (the embedded engine takes them). */
export type HostFault = 'fail' | 'recover';

export interface EngineSet {
  engine(host: string): HostEngine;
  capabilities(host: string): EngineCapabilities;
  /** What every host of the fleet holds, in as few round trips as the engines allow. */
  survey(): Promise<FleetSurvey>;
  /** The hosts that are failed on purpose (`vfleet host fail`) right now. */
  failed(): Promise<ReadonlySet<string>>;
  /** Where the hosts' own facts disagree with the spec, or a host does not answer. */
  factsWarnings(): Promise<string[]>;
  inject(host: string, fault: HostFault): Promise<void>;
  close(): Promise<void>;
}

export function openEngineSet(fleet: Fleet, options: EngineSetOptions): EngineSet {
  const hosts = new Map(fleet.hosts.map((h) => [h.name, h]));
  const cache = new Map<string, HostEngine>();
  const transports: Transport[] = [];
  const hostOf = (name: string): Host => {
    const host = hosts.get(name);
    if (!host) throw new VfleetError('unknown-host', `no host ${name} in the spec`);
    return host;
  };
  const emulated = fleet.hosts.filter((h) => h.engine === 'embedded').map((h) => h.name);
  const real = fleet.hosts.filter((h) => h.engine !== 'embedded');
  const engine = (name: string): HostEngine => {
    const known = cache.get(name);
    if (known) return known;
    const host = hostOf(name);
    let made: HostEngine;
    if (host.engine === 'embedded') {
      made = new EmbeddedEngine(options.redis, fleet.name, host, {
        bootLatencyMs: options.bootLatencyMs,
        currentPlanKey: options.currentPlanKey,
      });
    } else {
      const transport = withCommandTimeout(openTransport(host), options.commandTimeoutMs);
      transports.push(transport);
      made = new RealEngine(host, transport, options.real);
    }
    cache.set(name, made);
    return made;
  };
  return {
    engine,
    capabilities: (name) => ENGINE_CAPABILITIES[hostOf(name).engine],
    async survey() {
      const [names, listed] = await Promise.all([
        embeddedListing(options.redis, fleet.name, emulated),
        Promise.all(
          real.map((h) =>
            engine(h.name)
              .list()
              .catch(() => null),
          ),
        ),
      ]);
      const listings = new Map<string, HostListing | null>();
      for (const [host, held] of names) listings.set(host, held && { names: held });
      const records = new Map<string, ReadonlyMap<string, EngineInstance>>();
      real.forEach((h, i) => {
        const instances = listed[i] ?? null;
        if (instances === null) {
          listings.set(h.name, null);
          return;
        }
        const byName = new Map(instances.map((x) => [x.name, x]));
        records.set(h.name, byName);
        listings.set(h.name, {
          names: new Set(byName.keys()),
          status: new Map(instances.map((x) => [x.name, x.status])),
        });
      });
      return {
        listings,
        async describe(wanted) {
          const fromRedis = wanted.filter((w) => !records.has(w.host));
          const found = await instancesAt(options.redis, fleet.name, fromRedis);
          for (const w of wanted) {
            const instance = records.get(w.host)?.get(w.name);
            if (instance) found.push({ host: w.host, instance });
          }
          return found;
        },
      };
    },
    async failed() {
      const down = await Promise.all(emulated.map((h) => hostIsDown(options.redis, fleet.name, h)));
      return new Set(emulated.filter((_, i) => down[i]));
    },
    async factsWarnings() {
      const own = fleet.hosts.filter((h) => ENGINE_CAPABILITIES[h.engine].ownFacts);
      const each = await Promise.all(
        own.map(async (host) => {
          try {
            return factsDrift(host, await engine(host.name).facts());
          } catch (e) {
            return [
              `${host.name}: cannot read its facts: ${e instanceof Error ? e.message : String(e)}`,
            ];
          }
        }),
      );
      return each.flat();
    },
    async inject(name, fault) {
      const host = hostOf(name);
      if (!ENGINE_CAPABILITIES[host.engine].faultInjection) {
        throw new VfleetError(
          'not-embedded',
          `host ${name} uses the ${host.engine} engine, which takes no injected faults; only embedded hosts can be failed on purpose`,
        );
      }
      await setHostDown(options.redis, fleet.name, name, fault === 'fail');
    },
    async close() {
      await Promise.all(transports.map((t) => t.close().catch(() => undefined)));
    },
  };
}
