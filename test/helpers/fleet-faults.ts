// What the Redis fault tests share (redis-faults-cli, redis-failover-faults-cli, redis-lost-cli):
// the root fleet's emulated hosts read straight from Redis (every instance's copies, sampled
// while an apply runs: never two), a wait until an apply has made some progress, the apply's
// NDJSON read back per round, and the fleet converged afterwards — every instance of the spec
// exactly once, the plan empty.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import type { Cluster, Redis } from 'ioredis';
import { replicaName } from '../../src/model/fleet.js';
import { rootFleet } from './root-fleet.js';
import { pollUntil, spawnVfleet, vfleet } from './vfleet-cli.js';

type Client = Redis | Cluster;

const fleet = rootFleet();
/** The root fleet's hosts and the names of every instance it wants. */
export const HOSTS = fleet.hosts.map((h) => h.name);
export const WANTED = fleet.groups.flatMap((g) =>
  Array.from({ length: g.replicas }, (_, i) => replicaName(g.name, i)),
);

/** How many hosts hold each instance now, as the emulated hosts keep them in Redis. */
export async function copiesOnHosts(redis: Client): Promise<Map<string, number>> {
  const copies = new Map<string, number>();
  const lists = await Promise.all(
    HOSTS.map((h) => redis.hkeys(`vfleet:{${fleet.name}}:engine:${h}:instances`)),
  );
  for (const names of lists) for (const n of names) copies.set(n, (copies.get(n) ?? 0) + 1);
  return copies;
}

/**
 * Samples the hosts every 50 ms until stopped; a sample Redis does not answer within 2 s (it is
 * down, restarting, failing over) is skipped. What it returns: how many samples were read, and every instance ever
 * seen on two hosts at once.
 */
export function sampleCopies(redis: Client) {
  let stopped = false;
  let samples = 0;
  const doubled = new Set<string>();
  const loop = (async () => {
    while (!stopped) {
      try {
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error('no answer')), 2_000);
        });
        const copies = await Promise.race([copiesOnHosts(redis), late]).finally(() =>
          clearTimeout(timer),
        );
        for (const [name, n] of copies) if (n > 1) doubled.add(name);
        samples++;
      } catch {
        // down or restarting: the next sample
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      return { samples, doubled: [...doubled] };
    },
  };
}

/** Resolves once the fleet's state version is at least `version` (the apply is under way). */
export async function untilVersion(redis: Client, version: number): Promise<void> {
  await pollUntil(
    `state version ${version}`,
    async () =>
      Number(await redis.get(`vfleet:{${fleet.name}}:version`).catch(() => 0)) >= version
        ? true
        : undefined,
    60_000,
  );
}

/** `apply --json`'s lines: for each round, its plan's action ids and the actions it reported done. */
export function rounds(output: string): Array<{ planned: string[]; done: string[] }> {
  const out: Array<{ planned: string[]; done: string[] }> = [];
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue;
    const doc = JSON.parse(line) as {
      type: string;
      plan?: { actions: Array<{ id: string }> };
      outcome?: string;
      action?: string;
    };
    if (doc.type === 'plan')
      out.push({ planned: doc.plan?.actions.map((a) => a.id) ?? [], done: [] });
    if (doc.type === 'action' && doc.outcome === 'done')
      out.at(-1)?.done.push(doc.action as string);
  }
  return out;
}

/** No action reported done twice in one round. */
export function assertNoneTwiceInARound(output: string): void {
  for (const [i, round] of rounds(output).entries()) {
    const twice = round.done.filter((a, j) => round.done.indexOf(a) !== j);
    assert.deepEqual(twice, [], `round ${i + 1} reported these done twice`);
  }
}

/**
 * The fleet converged: the plan empty, every instance of the spec on exactly one host and
 * nothing else there.
 */
export async function assertConverged(
  redis: Client,
  cwd: string,
  env: NodeJS.ProcessEnv,
): Promise<void> {
  const plan = vfleet(['plan', '--detailed-exitcode'], cwd, env);
  assert.equal(plan.code, 0, plan.stdout + plan.stderr);
  const copies = await copiesOnHosts(redis);
  assert.deepEqual([...copies.keys()].sort(), [...WANTED].sort(), 'every instance, nothing else');
  assert.deepEqual(
    [...copies].filter(([, n]) => n !== 1),
    [],
    'each instance on exactly one host',
  );
}

/**
 * `vfleet apply --json --external-workers` (the workers are the caller's), its hosts sampled
 * from the start, resolved once it is under way (state version 8): the moment for a fault.
 */
export async function applyUnderWay(
  cwd: string,
  env: NodeJS.ProcessEnv,
  children: ChildProcess[],
  redis: Client,
) {
  const apply = spawnVfleet(
    ['apply', '--auto-approve', '--json', '--external-workers'],
    cwd,
    env,
    children,
  );
  let stdout = '';
  apply.child.stdout?.on('data', (d) => {
    stdout += d;
  });
  const sampler = sampleCopies(redis);
  await untilVersion(redis, 8);
  return { ...apply, stdout: () => stdout, sampler };
}
