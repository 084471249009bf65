// A seeded simulation of the controller (pve-ha-manager's HA simulator is the model): the real
// controller code (controller/controller.ts: leader lease, liveness, restarts, reconcile) over
// the real embedded engine in a real redis-server, on a virtual clock. What is simulated is only
// what cannot be a real process here at this speed: the hosts' agents tick as the hosts' own
// processes on the hosts' own clocks (each skewed from the controllers'), and a plan runs inline
// (queue/run-inline.ts: the worker's own handler, without BullMQ's real-time polling).
//
// A scenario is rounds of actions at virtual times — crash, partition, heal, fence, controller
// kill and start — and the simulation records every controller event with its virtual time,
// and checks on every tick, from the emulated hosts' own records (the truth, whatever the
// controller believes), that no instance runs on two hosts.
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { ApplyResult } from '../../src/app/apply.js';
import { planFleet } from '../../src/app/plan.js';
import { type FleetSession, openSession, type ValidSpec } from '../../src/app/session.js';
import {
  type Controller,
  type ControllerEvent,
  createController,
  type ExecuteOptions,
  type Executor,
  type SpecSource,
} from '../../src/controller/controller.js';
import { EmbeddedEngine } from '../../src/engines/embedded/embedded-engine.js';
import { embeddedAgentTick } from '../../src/engines/embedded/emulated-agent.js';
import { runPlanInline } from '../../src/queue/run-inline.js';
import { loadFleet } from '../../src/spec/load-fleet.js';
import { ControlState } from '../../src/state/control-state.js';
import { engineHostKeys, fleetKeys } from '../../src/state/keys.js';
import { aModelHost } from '../helpers/hosts.js';
import { toYaml } from '../helpers/spec-builders.js';

export const SIM_POLICY = { ttlMs: 1_000, graceMs: 500 };
/** A tick of the virtual clock. */
export const STEP_MS = 250;

export type SimAction =
  | {
      readonly at: number;
      readonly do: 'fail' | 'partition' | 'recover' | 'fence' | 'unfence';
      readonly host: string;
    }
  /** The leader (or controller `name`) dies without a word: no release, no more ticks. */
  | { readonly at: number; readonly do: 'kill-controller'; readonly name?: string }
  | {
      readonly at: number;
      readonly do: 'start-controller';
      readonly name: string;
      readonly skewMs?: number;
    };

export interface SimFleet {
  readonly name: string;
  /** Host names, each its own failure domain. */
  readonly hosts: readonly string[];
  /** Replicas of the protected group `p` and of the unprotected group `u`. */
  readonly protectedReplicas: number;
  readonly unprotectedReplicas: number;
}

export interface SimScenario {
  readonly fleet: SimFleet;
  /** Per host, its clock's offset from the controllers' (ms, ±). */
  readonly hostSkewMs?: Readonly<Record<string, number>>;
  /** Controllers at the start: name → skew from the virtual clock. */
  readonly controllers: Readonly<Record<string, number>>;
  readonly actions: readonly SimAction[];
  /** How long to run (virtual ms). */
  readonly durationMs: number;
  /** The tick (virtual ms; default STEP_MS): every agent, controller and check runs once per tick. */
  readonly stepMs?: number;
}

export interface SimResult {
  /** `+<s> <type> <host|instance>`: the controller events, in order. */
  readonly log: string[];
  /** Per tick: the most copies any instance had running at once (must be ≤ 1). */
  readonly worstCopies: number;
  readonly doubles: Array<{
    readonly at: number;
    readonly instance: string;
    readonly hosts: string[];
  }>;
  /** At the end: instance → hosts running it (from the hosts' own records). */
  readonly running: ReadonlyMap<string, readonly string[]>;
  readonly desired: readonly string[];
}

function specText(fleet: SimFleet): string {
  const doc = {
    apiVersion: 'vfleet/v1',
    kind: 'Fleet',
    metadata: { name: fleet.name },
    spec: {
      failover: { tolerate: 1, domain: 'host' },
      hosts: fleet.hosts.map((name) => ({
        name,
        cpu: { sockets: 1, coresPerSocket: 8, threadsPerCore: 1 },
        memoryMiB: 16384,
        diskGiB: 200,
        os: { family: 'debian', release: '12', arch: 'x86_64' },
        runs: ['container'],
      })),
      images: [
        {
          name: 'base',
          kind: 'container',
          os: { family: 'debian', release: '12', arch: 'x86_64' },
          packages: {},
        },
      ],
      instances: [
        ...(fleet.protectedReplicas > 0
          ? [
              {
                name: 'p',
                image: 'base',
                replicas: fleet.protectedReplicas,
                resources: { vcpus: 1, memoryMiB: 1024 },
                failover: true,
              },
            ]
          : []),
        ...(fleet.unprotectedReplicas > 0
          ? [
              {
                name: 'u',
                image: 'base',
                replicas: fleet.unprotectedReplicas,
                resources: { vcpus: 1, memoryMiB: 1024 },
              },
            ]
          : []),
      ],
    },
  };
  return toYaml(doc);
}

function validSpec(fleet: SimFleet): ValidSpec {
  const text = specText(fleet);
  const loaded = loadFleet(text, 'sim.yaml');
  if (!loaded.fleet) {
    throw new Error(`the simulated spec does not load: ${JSON.stringify(loaded.diagnostics)}`);
  }
  return {
    file: 'sim.yaml',
    // Not a file on disk: its source is said here, so no session asks git about it.
    revision: { kind: 'file', path: 'sim.yaml' },
    fleet: loaded.fleet,
    specHash: createHash('sha256').update(text).digest('hex'),
    diagnostics: loaded.diagnostics,
  };
}

/** The plan run inline, as apply would run it (fresh plan, narrowed, fenced by the token). */
async function applyInline(
  session: FleetSession,
  clock: () => number,
  o: Partial<ExecuteOptions>,
): Promise<ApplyResult> {
  const emit = o.onEvent ?? (() => undefined);
  const { plan: fresh } = await planFleet(session, { persist: true, nowMs: clock() });
  const plan = o.select ? o.select(fresh) : fresh;
  emit({ type: 'plan', plan });
  if (plan.actions.length === 0) return { status: 'applied', plan, outcomes: [] };
  await session.state.setCurrentPlan(plan.id);
  emit({ type: 'running', plan });
  const outcomes = await runPlanInline(plan, {
    engines: session.engines,
    state: session.state,
    clock,
    ...(o.leaderToken === undefined ? {} : { leaderToken: o.leaderToken }),
    onOutcome: (outcome) => emit({ type: 'outcome', plan, outcome }),
  });
  return { status: 'applied', plan, outcomes };
}

const inlineExecutor =
  (clock: () => number): Executor =>
  (session, o) =>
    applyInline(session, clock, o);

/** Which hosts run each instance right now, from the emulated hosts' own records. */
async function truth(redis: Redis, fleet: SimFleet): Promise<Map<string, string[]>> {
  const pipe = redis.pipeline();
  for (const host of fleet.hosts) pipe.hgetall(engineHostKeys(fleet.name, host).instances);
  const replies = (await pipe.exec()) ?? [];
  const running = new Map<string, string[]>();
  fleet.hosts.forEach((host, i) => {
    const records = (replies[i]?.[1] ?? {}) as Record<string, string>;
    for (const [name, json] of Object.entries(records)) {
      if ((JSON.parse(json) as { status: string }).status !== 'running') continue;
      running.set(name, [...(running.get(name) ?? []), host]);
    }
  });
  return running;
}

const describeEvent = (e: ControllerEvent) => {
  const on = [e.host, e.instance].filter((x) => x !== undefined).join(' ');
  return on === '' ? String(e.type) : `${String(e.type)} ${on}`;
};

/** Runs one scenario against `redis` (the fleet's keys are removed first). */
export async function simulate(
  redis: Redis,
  url: string,
  scenario: SimScenario,
): Promise<SimResult> {
  const { fleet } = scenario;
  const keys = await redis.keys(`${fleetKeys(fleet.name).prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  const spec = validSpec(fleet);
  let now = 1_700_000_000_000;
  const start = now;
  const log: string[] = [];
  const source: SpecSource = {
    describe: 'sim.yaml',
    signature: () => 'fixed',
    read: () => ({ ok: true, ...spec }),
  };
  const env = { ...process.env, REDIS_URL: url, VFLEET_EMBEDDED_BOOT_MS: '0' };
  // Redis's own clock is real; the simulation's is virtual: the leader lease expires by the
  // world's virtual clock (the one clock every controller shares, as they share the server's).
  const open = async (s: ValidSpec): Promise<FleetSession> => {
    const session = await openSession(s, {
      cwd: process.cwd(),
      env,
      lostAfterMs: Number.POSITIVE_INFINITY,
    });
    return {
      ...session,
      control: new ControlState(session.connection.redis, s.fleet.name, () => now),
    };
  };

  const controllers = new Map<
    string,
    { controller: Controller; skew: number; session: FleetSession }
  >();
  const startOne = async (name: string, skew: number) => {
    const clock = () => now + skew;
    let owned: FleetSession | undefined;
    const controller = await createController(source, {
      policy: SIM_POLICY,
      intervalMs: 5_000,
      autoApply: true,
      concurrency: 1,
      takeoverMs: 1_000,
      externalWorkers: false,
      clock,
      env,
      cwd: process.cwd(),
      runAgents: false,
      executor: inlineExecutor(clock),
      openSession: async (s) => {
        owned = await open(s);
        return owned;
      },
      id: name,
      onEvent: (e) => {
        if (e.type === 'drift' || e.type === 'in-sync') return;
        const detail = e.type === 'reconciled' ? ` (${String(e.actions)} actions)` : '';
        log.push(`+${((now - start) / 1000).toFixed(2)}s ${name} ${describeEvent(e)}${detail}`);
      },
    });
    controllers.set(name, { controller, skew, session: owned as FleetSession });
  };

  // The fleet as the first apply leaves it: every instance placed and running.
  const setup = await open(spec);
  const engines = new Map(
    fleet.hosts.map((h) => [
      h,
      new EmbeddedEngine(redis, fleet.name, aModelHost({ name: h }), { bootLatencyMs: 0 }),
    ]),
  );
  try {
    const first = await applyInline(setup, () => now, {});
    if (first.status !== 'applied' || first.outcomes.some((o) => o.outcome === 'failed')) {
      throw new Error(`the first apply did not complete: ${JSON.stringify(first)}`);
    }
  } finally {
    await setup.close();
  }
  for (const [name, skew] of Object.entries(scenario.controllers)) await startOne(name, skew);

  const doubles: SimResult['doubles'] = [];
  let worst = 0;
  const pending = [...scenario.actions].sort((a, b) => a.at - b.at);
  const hostClock = (host: string) => now + (scenario.hostSkewMs?.[host] ?? 0);
  try {
    for (let t = 0; t <= scenario.durationMs; t += scenario.stepMs ?? STEP_MS) {
      now = start + t;
      while (pending.length > 0 && (pending[0] as SimAction).at <= t) {
        const action = pending.shift() as SimAction;
        log.push(
          `+${(t / 1000).toFixed(2)}s world ${action.do}${'host' in action ? ` ${action.host}` : 'name' in action && action.name ? ` ${action.name}` : ''}`,
        );
        switch (action.do) {
          case 'fail':
          case 'partition':
          case 'recover':
            await engines.get(action.host)?.inject(action.do);
            break;
          case 'fence':
            await redis.hset(
              fleetKeys(fleet.name).fenced,
              action.host,
              JSON.stringify({ at: now, by: 'sim' }),
            );
            break;
          case 'unfence':
            await redis.hdel(fleetKeys(fleet.name).fenced, action.host);
            break;
          case 'kill-controller': {
            const victim =
              action.name ?? [...controllers].find(([, c]) => c.controller.token() !== null)?.[0];
            const c = victim ? controllers.get(victim) : undefined;
            if (c && victim) {
              controllers.delete(victim);
              await c.session.close(); // SIGKILL: the lease is not given up
            }
            break;
          }
          case 'start-controller':
            await startOne(action.name, action.skewMs ?? 0);
            break;
        }
      }
      // The hosts' agents, each on its own clock.
      const agents = await embeddedAgentTick(
        redis,
        fleet.name,
        fleet.hosts,
        hostClock,
        SIM_POLICY.ttlMs,
      );
      for (const [host, r] of agents) {
        if (r.instances.length === 0) continue;
        const what = r.state === 'self-fenced' ? 'self-fenced' : 'stale-copies-destroyed';
        log.push(`+${(t / 1000).toFixed(2)}s ${host} ${what} ${[...r.instances].sort().join(',')}`);
      }
      for (const { controller } of controllers.values()) await controller.tick(true);
      const running = await truth(redis, fleet);
      for (const [instance, hosts] of running) {
        worst = Math.max(worst, hosts.length);
        if (hosts.length > 1) doubles.push({ at: t, instance, hosts });
      }
    }
    const desired = [
      ...Array.from({ length: fleet.protectedReplicas }, (_, i) => `p-${i}`),
      ...Array.from({ length: fleet.unprotectedReplicas }, (_, i) => `u-${i}`),
    ];
    return { log, worstCopies: worst, doubles, running: await truth(redis, fleet), desired };
  } finally {
    for (const { controller } of controllers.values()) await controller.close();
  }
}

/** mulberry32: a small seeded PRNG, so a failing seed can be run again. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A random scenario from a seed: 3–5 hosts, a few protected and unprotected instances, one or
 * two controllers, every clock skewed by up to ±5 s, and a few faults — crashes, partitions,
 * heals, an operator fence of a host that is really down (an operator who lies about a running
 * host makes two copies by definition), the leader's death and a new controller — then
 * everything healed, and time to converge.
 */
export function randomScenario(seed: number): SimScenario {
  const r = prng(seed);
  const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
  const pick = <T>(xs: readonly T[]): T => xs[int(0, xs.length - 1)] as T;
  const skew = () => int(-5_000, 5_000);
  const hosts = Array.from({ length: int(3, 5) }, (_, i) => `h${i + 1}`);
  const fleet: SimFleet = {
    name: `sim-${seed}`,
    hosts,
    protectedReplicas: int(1, 3),
    unprotectedReplicas: int(0, 2),
  };
  const controllers: Record<string, number> = { c0: skew() };
  if (r() < 0.5) controllers.c1 = skew();
  const actions: SimAction[] = [];
  const state = new Map(hosts.map((h) => [h, 'ok' as 'ok' | 'failed' | 'partitioned']));
  let at = 500;
  let started = 2;
  const faults = int(1, 4);
  for (let i = 0; i < faults; i++) {
    at += int(250, 4_000);
    const host = pick(hosts);
    const roll = r();
    if (roll < 0.3 && state.get(host) === 'ok') {
      actions.push({ at, do: 'fail', host });
      state.set(host, 'failed');
      if (r() < 0.4) {
        // Truthful: the host is down from the fail until a later action (after this one) heals it.
        at += int(0, 2_000);
        actions.push({ at, do: 'fence', host });
      }
    } else if (roll < 0.6 && state.get(host) === 'ok') {
      actions.push({ at, do: 'partition', host });
      state.set(host, 'partitioned');
    } else if (roll < 0.8 && state.get(host) !== 'ok') {
      actions.push({ at, do: 'recover', host }, { at, do: 'unfence', host });
      state.set(host, 'ok');
    } else {
      actions.push({ at, do: 'kill-controller' });
      actions.push({
        at: at + int(0, 3_000),
        do: 'start-controller',
        name: `c${started++}`,
        skewMs: skew(),
      });
    }
  }
  // Heal everything, make sure a controller runs, and leave time to converge.
  at += int(500, 3_000);
  for (const h of hosts)
    actions.push({ at, do: 'recover', host: h }, { at, do: 'unfence', host: h });
  actions.push({ at, do: 'start-controller', name: `c${started++}`, skewMs: skew() });
  const hostSkewMs = Object.fromEntries(hosts.map((h) => [h, skew()]));
  // Ticks of half a ttl: every rule still falls between two ticks (suspect, lost, the
  // watchdog, the restart point are whole ttls or halves apart), at half the cost.
  const stepMs = 500;
  const snap = (x: number) => Math.ceil(x / stepMs) * stepMs;
  const snapped = actions.map((a) => ({ ...a, at: snap(a.at) }));
  return { fleet, hostSkewMs, controllers, actions: snapped, durationMs: snap(at) + 8_000, stepMs };
}
