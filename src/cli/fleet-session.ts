// What the commands that touch a fleet's state share: the spec read and validated, its hash,
// and the fleet's Redis (the private server of this folder, or REDIS_URL) with its state.
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import {
  EmbeddedEngine,
  embeddedFences,
  embeddedListing,
  instancesAt,
  unknownInstances,
} from '../engines/embedded/embedded-engine.js';
import { factsDrift } from '../engines/facts-drift.js';
import type { EngineInstance, HostEngine } from '../engines/host-engine.js';
import { RealEngine, type RealEngineOptions } from '../engines/real/real-engine.js';
import { countBySeverity } from '../model/diagnostic.js';
import { isVfleetError, VfleetError } from '../model/errors.js';
import { type Fleet, replicaName } from '../model/fleet.js';
import type { ObservedInstance, ObservedState } from '../model/observed.js';
import { type FleetSnapshot, FleetState } from '../state/fleet-state.js';
import { fleetKeys, queuePrefix } from '../state/keys.js';
import { connectRedis, type RedisConnection } from '../state/redis-server.js';
import { openTransport } from '../transport/open-transport.js';
import { type Transport, withCommandTimeout } from '../transport/transport.js';
import { readAndLoadFleet } from './read-spec.js';
import type { Terminal } from './terminal.js';
import { renderValidate } from './views/diagnostics-view.js';

export interface FleetSession {
  readonly file: string;
  readonly fleet: Fleet;
  /** sha256 of the spec file's bytes: a saved plan is refused once the spec changes. */
  readonly specHash: string;
  readonly connection: RedisConnection;
  readonly state: FleetState;
  /** A new connection to the same server (BullMQ workers need their own). */
  connect(): Redis;
  engines(): { engine(host: string): HostEngine };
  /**
   * The observed state, refreshed from the hosts themselves (as Terraform refreshes before a
   * plan): an instance a host runs that the state does not know — created by an apply that died
   * before recording it — is adopted, so no plan ever creates it a second time elsewhere. With
   * `persist`, adopted instances are written to the state (apply does, under its lock).
   */
  observe(persist: boolean): Promise<ObservedState>;
  /** Where the real hosts' own facts disagree with the spec (or a host does not answer). */
  factsWarnings(): Promise<string[]>;
  close(): Promise<void>;
}

/** Real-engine settings a worker takes from its environment. */
export function realEngineOptions(env: NodeJS.ProcessEnv): RealEngineOptions {
  const number = (name: string) => {
    const value = env[name];
    return value === undefined || value === '' ? undefined : Number(value);
  };
  const qemuStop = number('VFLEET_VM_STOP_TIMEOUT_MS');
  const sandboxStop = number('VFLEET_SANDBOX_STOP_TIMEOUT_MS');
  return {
    qemu: {
      // kvm:tcg by default; `tcg` where /dev/kvm opens but KVM does not work (nested guests).
      ...(env.VFLEET_QEMU_ACCEL ? { accel: env.VFLEET_QEMU_ACCEL } : {}),
      ...(qemuStop === undefined ? {} : { stopTimeoutMs: qemuStop }),
    },
    sandbox: sandboxStop === undefined ? {} : { stopTimeoutMs: sandboxStop },
  };
}

/** Reads and validates the spec; on errors prints them and returns undefined. */
export function readValidFleet(
  file: string,
  terminal: Terminal,
): { fleet: Fleet; specHash: string } | undefined {
  const loaded = readAndLoadFleet(file);
  if (!loaded.fleet || countBySeverity(loaded.diagnostics).errors > 0) {
    terminal.err(
      renderValidate('text', { file, diagnostics: loaded.diagnostics, fleet: undefined }),
    );
    return undefined;
  }
  return { fleet: loaded.fleet, specHash: loaded.specHash as string };
}

export async function openFleet(
  file: string,
  terminal: Terminal,
  options: { readonly lostAfterMs?: number } = {},
): Promise<FleetSession | undefined> {
  const spec = readValidFleet(file, terminal);
  if (!spec) return undefined;
  const connection = await connectRedis({ cwd: process.cwd(), env: process.env, ...options });
  const state = new FleetState(connection.redis, spec.fleet.name);
  const extra: Redis[] = [];
  const bootLatencyMs = Number(process.env.VFLEET_EMBEDDED_BOOT_MS ?? 10);
  const realOptions = realEngineOptions(process.env);
  // Every host command ends within this (copying a disk included), so a hung one is retried.
  const commandTimeoutMs = Number(process.env.VFLEET_COMMAND_TIMEOUT_MS ?? 600_000);
  const cache = new Map<string, HostEngine>();
  const transports: Transport[] = [];
  const lookup = {
    engine: (name: string) => {
      const known = cache.get(name);
      if (known) return known;
      const host = spec.fleet.hosts.find((h) => h.name === name);
      if (!host) throw new VfleetError('unknown-host', `no host ${name} in ${file}`);
      let engine: HostEngine;
      if (host.engine === 'embedded') {
        engine = new EmbeddedEngine(connection.redis, spec.fleet.name, host, {
          bootLatencyMs,
          currentPlanKey: fleetKeys(spec.fleet.name).currentPlan,
        });
      } else {
        const transport = withCommandTimeout(openTransport(host), commandTimeoutMs);
        transports.push(transport);
        engine = new RealEngine(host, transport, realOptions);
      }
      cache.set(name, engine);
      return engine;
    },
  };
  /** What each real host runs; null for a host that does not answer. */
  const listReal = async () => {
    const real = spec.fleet.hosts.filter((h) => h.engine !== 'embedded');
    const listed = await Promise.all(
      real.map((h) =>
        lookup
          .engine(h.name)
          .list()
          .catch(() => null),
      ),
    );
    return new Map(real.map((h, i) => [h.name, listed[i] ?? null]));
  };
  /**
   * When the spec wants an instance the state does not have, the hosts' fences newer than the
   * state: a destroyed instance's tombstone outlives its record, and a create below it would be
   * refused for ever. A host that does not answer is skipped.
   */
  const fencesAbove = async (
    observed: ObservedState,
    byName?: ReadonlyMap<string, { readonly generation: number }>,
    embeddedRead?: Promise<Map<string, readonly string[] | null>>,
  ) => {
    const known = byName ?? new Map(observed.instances.map((i) => [i.instance, i]));
    const wanted = spec.fleet.groups.some((g) => {
      for (let i = 0; i < g.replicas; i++) if (!known.has(replicaName(g.name, i))) return true;
      return false;
    });
    if (!wanted) return undefined;
    const embedded = spec.fleet.hosts.filter((h) => h.engine === 'embedded').map((h) => h.name);
    const [fromEmbedded, each] = await Promise.all([
      embeddedRead ?? embeddedFences(connection.redis, spec.fleet.name, embedded),
      Promise.all(
        spec.fleet.hosts
          .filter((h) => h.engine !== 'embedded')
          .map((h) =>
            lookup
              .engine(h.name)
              .fences()
              .catch(() => new Map<string, number>()),
          ),
      ),
    ]);
    const above: Record<string, number> = {};
    const consider = (name: string, generation: number) => {
      if (generation > (known.get(name)?.generation ?? 0) && generation > (above[name] ?? 0)) {
        above[name] = generation;
      }
    };
    for (const pairs of fromEmbedded.values()) {
      if (!pairs) continue; // a failed host does not answer
      for (let i = 0; i + 1 < pairs.length; i += 2)
        consider(pairs[i] as string, Number(pairs[i + 1]));
    }
    for (const fences of each) for (const [name, generation] of fences) consider(name, generation);
    return Object.keys(above).length > 0 ? above : undefined;
  };
  return {
    file,
    ...spec,
    connection,
    state,
    connect() {
      // Made where every client is (redis-clients.ts): its errors are reported redacted, and a
      // server gone for good ends it. Failures surface as the jobs' own errors.
      const c = connection.clients.open({ maxRetriesPerRequest: null });
      extra.push(c);
      return c;
    },
    engines: () => lookup,
    async observe(persist: boolean) {
      const embedded = spec.fleet.hosts.filter((h) => h.engine === 'embedded').map((h) => h.name);
      // The state, then every host's listing: sent together (one connection keeps their order),
      // so Redis prepares the listings while this process parses the state.
      const reads = Promise.all([
        state.readAll(),
        embeddedListing(connection.redis, spec.fleet.name, embedded),
        listReal(),
      ]);
      // The embedded hosts' fences, needed when the spec wants an instance the state lacks:
      // asked for with the rest, so Redis reads them while this process parses the records.
      const embeddedFenceRead = embeddedFences(connection.redis, spec.fleet.name, embedded);
      embeddedFenceRead.catch(() => undefined); // awaited below only when wanted
      const [read, embeddedNames, realListing] = await reads;
      let snapshot = read;
      const recorded = new Map<string, ObservedInstance>();
      for (const i of read.instances) recorded.set(i.instance, i);
      const adopted: ObservedInstance[] = [];
      const fromEmbedded = await unknownInstances(
        connection.redis,
        spec.fleet.name,
        embeddedNames,
        recorded,
      );
      const seen = new Set(fromEmbedded.map((u) => u.instance.name));
      const fromReal: Array<{ host: string; instance: EngineInstance }> = [];
      for (const [host, instances] of realListing) {
        for (const instance of instances ?? []) {
          if (recorded.has(instance.name) || seen.has(instance.name)) continue;
          seen.add(instance.name);
          fromReal.push({ host, instance });
        }
      }
      for (const { host, instance: i } of [...fromEmbedded, ...fromReal]) {
        const record = {
          instance: i.name,
          group: i.group,
          host,
          generation: i.generation,
          status: i.status,
          image: i.image,
          resources: i.resources,
          failoverHost: null,
        };
        adopted.push(record);
        if (persist) await state.putInstance({ ...record, packages: { ...i.packages } });
      }
      // What the state has that its host, answering, no longer runs (or runs stopped): the host
      // is the truth, as Terraform's refresh has it. A host that does not answer keeps the
      // state's word.
      const realViews = new Map<string, ReadonlyMap<string, EngineInstance>>();
      for (const [host, listed] of realListing) {
        if (listed) realViews.set(host, new Map(listed.map((i) => [i.name, i])));
      }
      const missing: Record<string, string> = {};
      const stopped = new Set<string>();
      for (const record of snapshot.instances) {
        const names = embeddedNames.get(record.host);
        if (names !== undefined) {
          if (names !== null && !names.has(record.instance)) missing[record.instance] = record.host;
          continue;
        }
        const view = realViews.get(record.host);
        if (!view) continue; // not in the spec (refused later), or not answering
        const there = view.get(record.instance);
        if (there === undefined) missing[record.instance] = record.host;
        else if (there.status === 'stopped' && record.status === 'running') {
          stopped.add(record.instance);
        }
      }
      if (persist) {
        for (const name of Object.keys(missing)) await state.deleteInstance(name);
      }
      if (persist && (adopted.length > 0 || Object.keys(missing).length > 0)) {
        snapshot = await state.readAll();
      }
      const base = observedOf(snapshot);
      const listed = persist ? base.instances : [...base.instances, ...adopted];
      const current =
        Object.keys(missing).length === 0 && stopped.size === 0
          ? listed
          : listed
              .filter((i) => missing[i.instance] === undefined)
              .map((i) => (stopped.has(i.instance) ? { ...i, status: 'stopped' as const } : i));
      // Second copies: a host runs an instance the state (or the adoption above) has elsewhere.
      const adoptedOwner = new Map<string, string>();
      for (const a of adopted)
        if (!adoptedOwner.has(a.instance)) adoptedOwner.set(a.instance, a.host);
      const owners =
        snapshot === read ? recorded : new Map(snapshot.instances.map((i) => [i.instance, i]));
      const elsewhere = (name: string, host: string) => {
        const owner = owners.get(name)?.host ?? adoptedOwner.get(name);
        return owner !== undefined && owner !== host && missing[name] === undefined;
      };
      const embeddedStrays: Array<{ host: string; name: string }> = [];
      for (const [host, names] of embeddedNames) {
        for (const name of names ?? [])
          if (elsewhere(name, host)) embeddedStrays.push({ host, name });
      }
      const strays = [
        ...(await instancesAt(connection.redis, spec.fleet.name, embeddedStrays)),
        ...[...realListing].flatMap(([host, listed]) =>
          (listed ?? [])
            .filter((i) => elsewhere(i.name, host))
            .map((instance) => ({ host, instance })),
        ),
      ].map(({ host, instance }) => ({
        instance: instance.name,
        host,
        generation: instance.generation,
      }));
      const observed: ObservedState = {
        ...base,
        instances: current,
        ...(Object.keys(missing).length > 0 ? { missing } : {}),
        ...(strays.length > 0 ? { strays } : {}),
      };
      // The records' map serves when the observed instances are exactly the records read.
      const asRead =
        snapshot === read &&
        adopted.length === 0 &&
        Object.keys(missing).length === 0 &&
        stopped.size === 0;
      const fences = await fencesAbove(
        observed,
        asRead ? recorded : undefined,
        persist ? undefined : embeddedFenceRead,
      );
      return fences ? { ...observed, fences } : observed;
    },
    async factsWarnings() {
      const real = spec.fleet.hosts.filter((h) => h.engine !== 'embedded');
      const each = await Promise.all(
        real.map(async (host) => {
          try {
            return factsDrift(host, await lookup.engine(host.name).facts());
          } catch (e) {
            return [
              `${host.name}: cannot read its facts: ${isVfleetError(e) || e instanceof Error ? e.message : String(e)}`,
            ];
          }
        }),
      );
      return each.flat();
    },
    async close() {
      await Promise.all(transports.map((t) => t.close().catch(() => undefined)));
      await Promise.all(extra.map((c) => c.quit().catch(() => c.disconnect())));
      await connection.close();
    },
  };
}

export const queuePrefixOf = (fleet: Fleet): string => queuePrefix(fleet.name);

export function observedOf(snapshot: FleetSnapshot): ObservedState {
  return {
    version: snapshot.version,
    instances: snapshot.instances,
  };
}

/**
 * A plan's id: the spec and the state it was made from, so the same inputs give the same jobs.
 * A destroy plan of the same spec and state is another plan, with other jobs: its id differs.
 */
export function planIdOf(specHash: string, stateVersion: number, destroy = false): string {
  const input = `${destroy ? 'destroy:' : ''}${specHash}:${stateVersion}`;
  return createHash('sha256').update(input).digest('hex').slice(0, 16);
}
