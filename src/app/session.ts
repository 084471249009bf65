// A session on one fleet: its spec read and validated (with the hash a saved plan is checked
// against), the fleet's Redis (the folder's private server, or REDIS_URL) with its state, and the
// fleet's engines. Every operation of app/ takes one; the CLI opens it per command, the
// controller will hold one. Nothing here prints: an invalid spec comes back as its diagnostics.

import { type EngineSet, openEngineSet } from '../engines/engine-set.js';
import type { RealEngineOptions } from '../engines/real/real-engine.js';
import { countBySeverity, type Diagnostic } from '../model/diagnostic.js';
import type { Fleet } from '../model/fleet.js';
import type { SourceRevision } from '../model/source.js';
import { connectRedis, type RedisConnection } from '../state/connect-redis.js';
import { ControlState } from '../state/control-state.js';
import { FleetState, type StateReply } from '../state/fleet-state.js';
import { fleetKeys, queuePrefix } from '../state/keys.js';
import type { RedisClient } from '../state/redis-client.js';
import { embeddedRedisRunning } from '../state/redis-server.js';
import { within } from '../state/within.js';
import { readAndLoadFleet } from './read-spec.js';
import { type StateReadStart, startStateRead } from './state-read-start.js';

export interface ValidSpec {
  readonly file: string;
  readonly fleet: Fleet;
  /** sha256 of the spec and every file it names that was read: a saved plan is refused once it changes. */
  readonly specHash: string;
  /** Warnings only (a valid spec has no errors). */
  readonly diagnostics: readonly Diagnostic[];
  /** Where it came from, when the reader knows better than the file (a git source's commit). */
  readonly revision?: SourceRevision;
}

export type SpecRead =
  | ({ readonly ok: true } & ValidSpec)
  | { readonly ok: false; readonly file: string; readonly diagnostics: readonly Diagnostic[] };

/** Reads and validates the spec; its diagnostics when it has errors. */
export function readValidSpec(file: string): SpecRead {
  const loaded = readAndLoadFleet(file);
  if (!loaded.fleet || countBySeverity(loaded.diagnostics).errors > 0) {
    return { ok: false, file, diagnostics: loaded.diagnostics };
  }
  return {
    ok: true,
    file,
    fleet: loaded.fleet,
    specHash: loaded.specHash as string,
    diagnostics: loaded.diagnostics,
  };
}

export interface FleetSession extends ValidSpec {
  readonly connection: RedisConnection;
  readonly state: FleetState;
  /** The controller's keys: leader lease, host leases, fenced hosts, published health. */
  readonly control: ControlState;
  readonly engines: EngineSet;
  /** The fleet's BullMQ key prefix (under its hash tag). */
  readonly queuePrefix: string;
  /**
   * A new connection to the same server (BullMQ workers need their own). `autoPipelining`: the
   * commands sent in one tick go out in one write (a scrape of a thousand queues' counts).
   */
  connect(options?: { readonly autoPipelining?: boolean }): RedisClient;
  /**
   * The state read sent before the spec was parsed (`prefetchState`), once: refresh takes it
   * (and decodes it, `FleetState.decode`) instead of reading again. Undefined when there is
   * none, or it was taken.
   */
  takePrefetchedState(): Promise<StateReply> | undefined;
  close(): Promise<void>;
}

export interface SessionOptions {
  readonly cwd: string;
  readonly env: NodeJS.ProcessEnv;
  /** How long a lost Redis may stay lost before the store counts as gone (Infinity: a daemon). */
  readonly lostAfterMs?: number;
  /** What `prefetchState` started for this spec's fleet: its connection and read are used. */
  readonly prefetched?: StatePrefetch;
}

/** A connection and the fleet's state read, started before the spec is parsed. */
export interface StatePrefetch {
  /** The fleet whose state is being read (the spec's name as guessed: check it). */
  readonly fleet: string;
  /**
   * The session's connection, made while the spec is parsed; undefined when making it failed
   * (the session connects again, and reports why).
   */
  readonly connection: Promise<RedisConnection | undefined>;
  /**
   * The state's reply (fetchStateRaw: state-read-start.ts), decoded where it is taken; when it
   * fails, the session reads through its connection instead.
   */
  readonly reply: Promise<StateReply>;
  /** Abandons both, for when the spec turns out invalid or names another fleet. */
  discard(): Promise<void>;
}

/**
 * How long the session waits for the early connection, beyond the spec's parse, before it
 * connects as it always does.
 */
const PREFETCH_CONNECT_MS = 1_000;

/**
 * For a read-only command (plan): the fleet's state read sent before the spec is parsed
 * (state-read-start.ts; `started` when the command started it already), so that Redis builds
 * and sends the reply (megabytes on 100,000 instances) while this process parses and validates
 * the spec, and the session's connection made meanwhile. Only where connecting has no effect of
 * its own — REDIS_URL, or the folder's private server already running (none is started for a
 * spec that may turn out invalid) — and only when the spec's fleet name can be read without
 * parsing it (`fleetNameHint`); undefined otherwise (and `started` is abandoned). When the early
 * connection fails or is slow, the session connects as it always does, after the spec, and
 * reports what fails then; when the raw read fails, the session reads through its connection.
 */
export async function prefetchState(
  file: string,
  options: Omit<SessionOptions, 'prefetched'>,
  started: StateReadStart | undefined = startStateRead(file, options),
): Promise<StatePrefetch | undefined> {
  const url = options.env.REDIS_URL;
  if (
    started === undefined ||
    ((url === undefined || url.trim() === '') && !(await embeddedRedisRunning(options.cwd)))
  ) {
    started?.abandon();
    return undefined;
  }
  // The session's connection is made meanwhile, and not waited for here: Redis answers its
  // handshake only after it has run the read, and the spec can be parsed in the meantime.
  const connection = connectRedis({
    cwd: options.cwd,
    env: options.env,
    ...(options.lostAfterMs === undefined ? {} : { lostAfterMs: options.lostAfterMs }),
  }).catch(() => undefined);
  return {
    fleet: started.fleet,
    connection,
    reply: started.reply,
    async discard() {
      started.abandon();
      const made = await within(PREFETCH_CONNECT_MS, connection, undefined);
      if (made) await made.close();
      else void connection.then((late) => late?.close());
    },
  };
}

/** Real-engine settings taken from the environment. */
export function realEngineOptions(env: NodeJS.ProcessEnv): RealEngineOptions {
  const number = (name: string) => {
    const value = env[name];
    return value === undefined || value === '' ? undefined : Number(value);
  };
  const qemuStop = number('VFLEET_VM_STOP_TIMEOUT_MS');
  const sandboxStop = number('VFLEET_SANDBOX_STOP_TIMEOUT_MS');
  const migrationTimeout = number('VFLEET_MIGRATION_TIMEOUT_MS');
  const migrationBandwidth = number('VFLEET_MIGRATION_BANDWIDTH');
  const patchInstall = number('VFLEET_PATCH_TIMEOUT_MS');
  return {
    qemu: {
      // kvm:tcg by default; `tcg` where /dev/kvm opens but KVM does not work (nested guests).
      ...(env.VFLEET_QEMU_ACCEL ? { accel: env.VFLEET_QEMU_ACCEL } : {}),
      ...(qemuStop === undefined ? {} : { stopTimeoutMs: qemuStop }),
      ...(patchInstall === undefined ? {} : { patch: { installMs: patchInstall } }),
      migration: {
        ...(migrationTimeout === undefined ? {} : { timeoutMs: migrationTimeout }),
        ...(migrationBandwidth === undefined ? {} : { maxBandwidth: migrationBandwidth }),
      },
    },
    sandbox: {
      ...(sandboxStop === undefined ? {} : { stopTimeoutMs: sandboxStop }),
      ...(patchInstall === undefined ? {} : { patch: { installMs: patchInstall } }),
    },
  };
}

/** Opens a session on a valid spec (the caller has read it with readValidSpec). */
export async function openSession(spec: ValidSpec, options: SessionOptions): Promise<FleetSession> {
  let prefetched = options.prefetched?.fleet === spec.fleet.name ? options.prefetched : undefined;
  if (options.prefetched && !prefetched) await options.prefetched.discard();
  // The early connection if it is made by now or within a second more; else (failed, or a server
  // slow to answer) a connection made now, which reports what is wrong.
  const early = prefetched && (await within(PREFETCH_CONNECT_MS, prefetched.connection, undefined));
  if (prefetched && !early) void prefetched.connection.then((late) => late?.close());
  const connection =
    early ??
    (await connectRedis({
      cwd: options.cwd,
      env: options.env,
      ...(options.lostAfterMs === undefined ? {} : { lostAfterMs: options.lostAfterMs }),
    }));
  const state = new FleetState(connection.redis, spec.fleet.name);
  const extra: RedisClient[] = [];
  const engines = await openEngineSet(spec.fleet, {
    redis: connection.redis,
    bootLatencyMs: Number(options.env.VFLEET_EMBEDDED_BOOT_MS ?? 10),
    currentPlanKey: fleetKeys(spec.fleet.name).currentPlan,
    // Every host command ends within this (copying a disk included), so a hung one is retried.
    commandTimeoutMs: Number(options.env.VFLEET_COMMAND_TIMEOUT_MS ?? 600_000),
    answerMs: Number(options.env.VFLEET_HOST_ANSWER_MS ?? 5_000),
    real: realEngineOptions(options.env),
  });
  return {
    file: spec.file,
    fleet: spec.fleet,
    specHash: spec.specHash,
    diagnostics: spec.diagnostics,
    ...(spec.revision ? { revision: spec.revision } : {}),
    connection,
    state,
    control: new ControlState(connection.redis, spec.fleet.name),
    engines,
    queuePrefix: queuePrefix(spec.fleet.name),
    takePrefetchedState() {
      const reply = prefetched?.reply.catch(() => state.fetch());
      prefetched = undefined;
      return reply;
    },
    connect(options) {
      // Made where every client is (redis-clients.ts): its errors are reported redacted, and a
      // server gone for good ends it. Failures surface as the jobs' own errors.
      const c = connection.clients.open({
        maxRetriesPerRequest: null,
        ...(options?.autoPipelining ? { enableAutoPipelining: true } : {}),
      });
      extra.push(c);
      return c;
    },
    async close() {
      await engines.close();
      await Promise.all(extra.map((c) => c.quit().catch(() => c.disconnect())));
      await connection.close();
    },
  };
}
