// The engines of one fleet, built from its spec: the one place an engine — and, for a real
// host, its transport — is chosen by the host's `engine` field (ENGINES below, one builder per
// kind). What refresh needs of all hosts at once comes from here in batches (the embedded hosts
// in two Redis pipelines, the real ones listed side by side), and the faults an operator injects
// on purpose are the engines' own operations, refused where the engine cannot take them.

import { ENGINE_CAPABILITIES, type EngineCapabilities } from '../model/engine-capabilities.js';
import { VfleetError } from '../model/errors.js';
import type { EngineKind, Fleet, Host } from '../model/fleet.js';
import type { InstanceStatus } from '../model/observed.js';
import type { RedisClient } from '../state/redis-client.js';
import type { Transport } from '../transport/transport.js';
import { EmbeddedEngine } from './embedded/embedded-engine.js';
import { type AgentTickResult, embeddedAgentTick } from './embedded/emulated-agent.js';
import {
  embeddedFaults,
  embeddedFences,
  embeddedListing,
  embeddedRunning,
  instancesAt,
  visitFences,
} from './embedded/fleet-reads.js';
import { factsDrift } from './facts-drift.js';
import type { EngineInstance, HostEngine, HostFault, InjectedFault } from './host-engine.js';
import type { HostAgent } from './real/host-agent.js';
import type { RealEngine, RealEngineOptions } from './real/real-engine.js';

export type { AgentTickResult, HostFault, InjectedFault };

export interface EngineSetOptions {
  /** The fleet's Redis: where the embedded hosts live. */
  readonly redis: RedisClient;
  /** Embedded hosts: how long an instance takes to boot, ms. */
  readonly bootLatencyMs: number;
  /** Embedded hosts: the fleet's current-plan key, checked in the same step as a create. */
  readonly currentPlanKey: string;
  /** Real hosts: every host command ends within this (a hung one is killed and retried). */
  readonly commandTimeoutMs: number;
  /**
   * Real hosts: how long a listing (survey, running, fences) waits for a host before counting it
   * as not answering — a hung host (its sshd stopped: TCP up, no reply) must not hold a plan for
   * the keepalive's 30 s.
   */
  readonly answerMs?: number;
  readonly real: RealEngineOptions;
}

/** What one host holds, by instance name; `status` where the host reports it in its listing. */
export interface HostListing {
  /** Every instance name it holds, each once. */
  readonly list: readonly string[];
  /**
   * The same names as a set, made when first asked for: refresh asks only of a host whose
   * listing differs from the state's records, and on 100,000 instances making a set of every
   * host's names cost more than comparing them.
   */
  readonly names: ReadonlySet<string>;
  readonly status?: ReadonlyMap<string, Exclude<InstanceStatus, 'failed'>>;
}

/** A listing of distinct names, its set made when first asked for. */
function listingOf(
  list: readonly string[],
  status?: ReadonlyMap<string, Exclude<InstanceStatus, 'failed'>>,
): HostListing {
  let names: ReadonlySet<string> | undefined;
  return {
    list,
    get names() {
      names ??= new Set(list);
      return names;
    },
    ...(status === undefined ? {} : { status }),
  };
}

/** Every host's listing at one moment (null: the host did not answer), and their records. */
export interface FleetSurvey {
  readonly listings: ReadonlyMap<string, HostListing | null>;
  /** The records of the named instances as their hosts have them (absent ones left out). */
  describe(
    wanted: ReadonlyArray<{ readonly host: string; readonly name: string }>,
  ): Promise<Array<{ host: string; reported: EngineInstance }>>;
}

export interface EngineSet {
  engine(host: string): HostEngine;
  capabilities(host: string): EngineCapabilities;
  /** What every host of the fleet holds, in as few round trips as the engines allow. */
  survey(): Promise<FleetSurvey>;
  /**
   * Every answering host's fences (what HostEngine.fences says), asked for now — the embedded
   * hosts' in one round trip, so Redis reads them while the caller works — and visited later.
   */
  prefetchFences(): (visit: (name: string, generation: number) => void) => Promise<void>;
  /** The hosts under an injected fault right now (`vfleet host fail|partition`), and which. */
  failed(): Promise<ReadonlyMap<string, InjectedFault>>;
  /** Where the hosts' own facts disagree with the spec, or a host does not answer. */
  factsWarnings(): Promise<string[]>;
  /** `vfleet host fail|partition|recover`: refused (`not-embedded`) by an engine that cannot. */
  inject(host: string, fault: HostFault): Promise<void>;
  /**
   * One tick of the emulated agents of the embedded hosts (they renew their leases themselves,
   * or stop their instances when cut off). Per host what happened.
   */
  agentTick(nowMs: number, ttlMs: number): Promise<Map<string, AgentTickResult>>;
  /** The vfleet agents of the real hosts (local, ssh), by host: the controller drives them. */
  hostAgents(): ReadonlyMap<string, HostAgent>;
  /**
   * The instances each host itself reports running right now, read from the host (null: it does
   * not answer) — not from the state.
   */
  running(): Promise<Map<string, readonly string[] | null>>;
  close(): Promise<void>;
}

/** What a builder of ENGINES gets besides its host. */
interface BuildContext {
  readonly fleet: string;
  readonly options: EngineSetOptions;
  /** Every transport made, closed with the set. */
  readonly transports: Transport[];
  /** The real hosts' builders (real/real-hosts.ts), loaded when the fleet has a real host. */
  readonly real: typeof import('./real/real-hosts.js') | undefined;
}

/** The real hosts' builders: loaded by openEngineSet for any fleet with a host that needs them. */
function realHosts(ctx: BuildContext): typeof import('./real/real-hosts.js') {
  if (!ctx.real) throw new Error('internal: a real host in a fleet opened without real engines');
  return ctx.real;
}

const realContext = (ctx: BuildContext) => ({
  commandTimeoutMs: ctx.options.commandTimeoutMs,
  real: ctx.options.real,
  transports: ctx.transports,
});

/** One builder per `engine:` value; a new engine is a new row here and in ENGINE_CAPABILITIES. */
const ENGINES: { readonly [K in EngineKind]: (host: Host, ctx: BuildContext) => HostEngine } = {
  embedded: (host, { fleet, options }) =>
    new EmbeddedEngine(options.redis, fleet, host, {
      bootLatencyMs: options.bootLatencyMs,
      currentPlanKey: options.currentPlanKey,
    }),
  local: (host, ctx) => realHosts(ctx).localEngine(host, realContext(ctx)),
  ssh: (host, ctx) => realHosts(ctx).sshEngine(host, realContext(ctx)),
};

/**
 * The engines of the fleet's hosts, each made when first asked for. The real hosts' engines and
 * transports (QEMU, sandboxes, ssh) are loaded only when the fleet has a real host: a plan of an
 * embedded fleet spends no time loading them.
 */
export async function openEngineSet(fleet: Fleet, options: EngineSetOptions): Promise<EngineSet> {
  const hosts = new Map(fleet.hosts.map((h) => [h.name, h]));
  const cache = new Map<string, HostEngine>();
  const build: BuildContext = {
    fleet: fleet.name,
    options,
    transports: [],
    real: fleet.hosts.some((h) => h.engine !== 'embedded')
      ? await import('./real/real-hosts.js')
      : undefined,
  };
  const hostOf = (name: string): Host => {
    const host = hosts.get(name);
    if (!host) throw new VfleetError('unknown-host', `no host ${name} in the spec`);
    return host;
  };
  // The embedded hosts all live in the fleet's Redis: refresh reads them in pipelines.
  const emulated = fleet.hosts.filter((h) => h.engine === 'embedded').map((h) => h.name);
  const real = fleet.hosts.filter((h) => h.engine !== 'embedded');
  const answerMs = options.answerMs ?? 5_000;
  // Hosts with a question that went unanswered past answerMs and is still pending: asked again
  // before it settles, they count as not answering at once (a plan asks each host up to three
  // times: listing, fences, facts — a hung one would cost answerMs each time).
  const hanging = new Set<string>();
  /** A real host's answer, or `fallback` when it does not come within answerMs. */
  const answered = <T>(host: string, ask: () => Promise<T>, fallback: T): Promise<T> => {
    if (hanging.has(host)) return Promise.resolve(fallback);
    let timer: NodeJS.Timeout | undefined;
    let late = false;
    const answer = ask()
      .catch(() => fallback)
      .finally(() => {
        if (late) hanging.delete(host);
      });
    const waited = new Promise<T>((resolve) => {
      timer = setTimeout(() => {
        late = true;
        hanging.add(host);
        resolve(fallback);
      }, answerMs);
    });
    return Promise.race([answer, waited]).finally(() => clearTimeout(timer));
  };
  const engine = (name: string): HostEngine => {
    const known = cache.get(name);
    if (known) return known;
    const host = hostOf(name);
    const made = ENGINES[host.engine](host, build);
    cache.set(name, made);
    return made;
  };
  return {
    engine,
    capabilities: (name) => ENGINE_CAPABILITIES[hostOf(name).engine],
    async survey() {
      const [names, listed] = await Promise.all([
        embeddedListing(options.redis, fleet.name, emulated),
        Promise.all(real.map((h) => answered(h.name, () => engine(h.name).list(), null))),
      ]);
      const listings = new Map<string, HostListing | null>();
      for (const [host, held] of names) {
        listings.set(
          host,
          held &&
            listingOf(
              held.names,
              held.stopped.size > 0
                ? new Map([...held.stopped].map((n) => [n, 'stopped' as const]))
                : undefined,
            ),
        );
      }
      const records = new Map<string, ReadonlyMap<string, EngineInstance>>();
      real.forEach((h, i) => {
        const instances = listed[i] ?? null;
        if (instances === null) {
          listings.set(h.name, null);
          return;
        }
        const byName = new Map(instances.map((x) => [x.instance, x]));
        records.set(h.name, byName);
        listings.set(
          h.name,
          listingOf([...byName.keys()], new Map(instances.map((x) => [x.instance, x.status]))),
        );
      });
      return {
        listings,
        async describe(wanted) {
          const fromRedis = wanted.filter((w) => !records.has(w.host));
          const found = await instancesAt(options.redis, fleet.name, fromRedis);
          for (const w of wanted) {
            const reported = records.get(w.host)?.get(w.name);
            if (reported) found.push({ host: w.host, reported });
          }
          return found;
        },
      };
    },
    prefetchFences() {
      const fromEmbedded = embeddedFences(options.redis, fleet.name, emulated);
      const fromReal = Promise.all(
        real.map((h) => answered(h.name, () => engine(h.name).fences(), new Map<string, number>())),
      );
      // Awaited only when the caller visits: a rejection before then is not unhandled.
      fromEmbedded.catch(() => undefined);
      fromReal.catch(() => undefined);
      return async (visit) => {
        for (const text of (await fromEmbedded).values()) {
          if (text !== null) visitFences(text, visit); // null: a host under a fault
        }
        for (const fences of await fromReal)
          for (const [name, generation] of fences) visit(name, generation);
      };
    },
    async failed() {
      const faults = await embeddedFaults(options.redis, fleet.name, emulated);
      // Other engines that take faults (none yet) are asked one by one.
      const others = real.filter((h) => ENGINE_CAPABILITIES[h.engine].faultInjection);
      const theirs = await Promise.all(others.map((h) => engine(h.name).injectedFault()));
      others.forEach((h, i) => {
        const fault = theirs[i];
        if (fault) faults.set(h.name, fault);
      });
      return faults;
    },
    async factsWarnings() {
      const own = fleet.hosts.filter((h) => ENGINE_CAPABILITIES[h.engine].ownFacts);
      const each = await Promise.all(
        own.map((host) =>
          answered(host.name, async (): Promise<string[]> => {
            try {
              return factsDrift(host, await engine(host.name).facts());
            } catch (e) {
              return [
                `${host.name}: cannot read its facts: ${e instanceof Error ? e.message : String(e)}`,
              ];
            }
          }, [`${host.name}: did not answer within ${answerMs} ms`]),
        ),
      );
      return each.flat();
    },
    async inject(name, fault) {
      await engine(name).inject(fault);
    },
    async running() {
      const [fromRedis, listed] = await Promise.all([
        embeddedRunning(options.redis, fleet.name, emulated),
        Promise.all(real.map((h) => answered(h.name, () => engine(h.name).list(), null))),
      ]);
      real.forEach((h, i) => {
        const instances = listed[i] ?? null;
        fromRedis.set(
          h.name,
          instances === null
            ? null
            : instances.filter((x) => x.status === 'running').map((x) => x.instance),
        );
      });
      return fromRedis;
    },
    agentTick(nowMs, ttlMs) {
      return embeddedAgentTick(options.redis, fleet.name, emulated, nowMs, ttlMs);
    },
    hostAgents() {
      return new Map(real.map((h) => [h.name, (engine(h.name) as RealEngine).agent]));
    },
    async close() {
      await Promise.all(build.transports.map((t) => t.close().catch(() => undefined)));
    },
  };
}
