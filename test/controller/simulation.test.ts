// The controller's seeded simulation (simulation.ts): named scenarios whose event logs are diffed
// against the expected story (pve-ha-manager's regression tests: a scenario and its log), and
// seeded random scenarios — crashes, partitions, heals, fences, the leader's death, clocks
// skewed by up to ±5 s — with "never two running copies" checked on every tick, and the fleet
// converged (every instance running exactly once) once everything is healed.
// VFLEET_SIM_SEEDS sets how many random scenarios (default 1000); a failing seed is printed, and
// `VFLEET_SIM_SEEDS=1 VFLEET_SIM_FIRST=<seed>` runs it alone.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';
import { randomScenario, type SimFleet, type SimScenario, simulate } from './simulation.js';

let server: TestRedisServer;
let redis: Redis;
let url: string;
before(async () => {
  server = await startRedisServer({ args: ['--maxmemory-policy', 'noeviction'], tcp: true });
  redis = server.client();
  url = `${server.url}/0`;
});
after(async () => {
  await server.stop();
});

const fleet: SimFleet = {
  name: 'sim',
  hosts: ['h1', 'h2', 'h3'],
  protectedReplicas: 2,
  unprotectedReplicas: 1,
};

/** Each named scenario, its expected log, and where every instance runs at the end. */
const NAMED: ReadonlyArray<{
  readonly name: string;
  readonly scenario: SimScenario;
  readonly log: readonly string[];
  readonly end: string;
}> = [
  {
    name: 'a crashed host: suspect after the ttl, lost after the grace, restarted two ttls later',
    scenario: {
      fleet,
      controllers: { a: 0 },
      actions: [{ at: 2_000, do: 'fail', host: 'h1' }],
      durationMs: 8_000,
    },
    log: [
      '+0.00s a leader',
      '+2.00s world fail h1',
      '+3.00s a host-suspect h1',
      '+3.50s a host-lost h1',
      '+4.75s a restart-allowed h1',
      '+4.75s a restarted h2 p-0',
      '+4.75s a restarted h3 u-0',
      '+4.75s a reconciled (3 actions)',
      '+8.00s a leader-released',
    ],
    end: 'p-0@h2 p-1@h2 u-0@h3',
  },
  {
    name: 'a partition healed before the restart point: the watchdog stopped them, they start again in place',
    scenario: {
      fleet,
      controllers: { a: 0 },
      actions: [
        { at: 2_000, do: 'partition', host: 'h1' },
        { at: 3_750, do: 'recover', host: 'h1' },
      ],
      durationMs: 9_000,
    },
    log: [
      '+0.00s a leader',
      '+2.00s world partition h1',
      '+2.75s h1 self-fenced p-0,u-0',
      '+3.00s a host-suspect h1',
      '+3.50s a host-lost h1',
      '+3.75s world recover h1',
      '+3.75s a host-ok h1',
      '+3.75s a reconciled (2 actions)',
      '+9.00s a leader-released',
    ],
    end: 'p-0@h1 p-1@h2 u-0@h1',
  },
  {
    name: 'a long partition: self-fenced, restarted elsewhere, and its stale copies destroyed when it heals',
    scenario: {
      fleet,
      controllers: { a: 0 },
      actions: [
        { at: 2_000, do: 'partition', host: 'h1' },
        { at: 8_000, do: 'recover', host: 'h1' },
      ],
      durationMs: 12_000,
    },
    log: [
      '+0.00s a leader',
      '+2.00s world partition h1',
      '+2.75s h1 self-fenced p-0,u-0',
      '+3.00s a host-suspect h1',
      '+3.50s a host-lost h1',
      '+4.75s a restart-allowed h1',
      '+4.75s a restarted h2 p-0',
      '+4.75s a restarted h3 u-0',
      '+4.75s a reconciled (3 actions)',
      '+8.00s world recover h1',
      '+8.00s h1 stale-copies-destroyed p-0,u-0',
      '+8.00s a host-ok h1',
      '+12.00s a leader-released',
    ],
    end: 'p-0@h2 p-1@h2 u-0@h3',
  },
  {
    name: 'the leader killed: the standby leads within one ttl, then handles a crash',
    scenario: {
      fleet,
      controllers: { a: 0, b: 0 },
      actions: [
        { at: 2_000, do: 'kill-controller' },
        { at: 4_000, do: 'fail', host: 'h2' },
      ],
      durationMs: 10_000,
    },
    log: [
      '+0.00s a leader',
      '+2.00s world kill-controller',
      '+2.75s b leader',
      '+4.00s world fail h2',
      '+5.00s b host-suspect h2',
      '+5.50s b host-lost h2',
      '+6.75s b restart-allowed h2',
      '+6.75s b restarted h1 p-1',
      '+6.75s b reconciled (2 actions)',
      '+10.00s b leader-released',
    ],
    end: 'p-0@h1 p-1@h1 u-0@h1',
  },
  {
    name: 'clocks skewed by ±5 s between the controller and the hosts change nothing',
    scenario: {
      fleet,
      controllers: { a: 5_000 },
      hostSkewMs: { h1: -5_000, h2: 5_000, h3: 0 },
      actions: [{ at: 2_000, do: 'fail', host: 'h1' }],
      durationMs: 8_000,
    },
    log: [
      '+0.00s a leader',
      '+2.00s world fail h1',
      '+3.00s a host-suspect h1',
      '+3.50s a host-lost h1',
      '+4.75s a restart-allowed h1',
      '+4.75s a restarted h2 p-0',
      '+4.75s a restarted h3 u-0',
      '+4.75s a reconciled (3 actions)',
      '+8.00s a leader-released',
    ],
    end: 'p-0@h2 p-1@h2 u-0@h3',
  },
  {
    name: 'an operator fences a crashed host: restarted at once, without waiting for the lease',
    scenario: {
      fleet,
      controllers: { a: 0 },
      actions: [
        { at: 2_000, do: 'fail', host: 'h1' },
        { at: 2_500, do: 'fence', host: 'h1' },
      ],
      durationMs: 6_000,
    },
    log: [
      '+0.00s a leader',
      '+2.00s world fail h1',
      '+2.50s world fence h1',
      '+2.50s a host-fenced h1',
      '+2.50s a restart-allowed h1',
      '+2.50s a restarted h2 p-0',
      '+2.50s a restarted h3 u-0',
      '+2.50s a reconciled (3 actions)',
      '+6.00s a leader-released',
    ],
    end: 'p-0@h2 p-1@h2 u-0@h3',
  },
];

const where = (running: ReadonlyMap<string, readonly string[]>) =>
  [...running]
    .map(([instance, hosts]) => `${instance}@${hosts.join('+')}`)
    .sort()
    .join(' ');

describe('controller simulation: named scenarios and their event logs', () => {
  for (const { name, scenario, log, end } of NAMED) {
    it(name, async () => {
      const result = await simulate(redis, url, scenario);
      assert.deepEqual(result.doubles, []);
      assert.deepEqual(result.log, log);
      assert.equal(where(result.running), end);
    });
  }
});

describe('controller simulation: seeded random scenarios', () => {
  const seeds = Number(process.env.VFLEET_SIM_SEEDS ?? 1000);
  const first = Number(process.env.VFLEET_SIM_FIRST ?? 1);
  it(`${seeds} scenarios: never two running copies on any tick, converged once healed`, async () => {
    const failures: string[] = [];
    let next = first;
    let ticks = 0;
    // A few at a time on the one server (each its own fleet): Redis and this process overlap.
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (next < first + seeds) {
          const seed = next++;
          const scenario = randomScenario(seed);
          const result = await simulate(redis, url, scenario);
          ticks += Math.floor(scenario.durationMs / (scenario.stepMs ?? 250)) + 1;
          if (result.doubles.length > 0) {
            failures.push(
              `seed ${seed}: two running copies ${JSON.stringify(result.doubles.slice(0, 3))}\n${result.log.join('\n')}`,
            );
          }
          const wrong = result.desired.filter((d) => (result.running.get(d) ?? []).length !== 1);
          if (wrong.length > 0) {
            failures.push(
              `seed ${seed}: not converged (${where(result.running)}; wanted ${result.desired.join(' ')})\n${result.log.join('\n')}`,
            );
          }
          // Nothing else runs either: no instance the spec does not name.
          const extra = [...result.running.keys()].filter((i) => !result.desired.includes(i));
          if (extra.length > 0)
            failures.push(`seed ${seed}: unexpected instances ${extra.join(' ')}`);
        }
      }),
    );
    assert.deepEqual(failures.slice(0, 3), []);
    assert.ok(ticks >= seeds * 20, `every scenario ran its ticks (${ticks})`);
  });
});
