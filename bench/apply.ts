// npm run bench:apply — the main job's speed on a private redis-server:
//   1. 10,000 instances onto 100 embedded hosts from empty (boot latency 0), end to end through
//      the plan, BullMQ (one queue per host) and the engines, in actions/s; against the
//      throughput of no-op BullMQ jobs on the same Redis, same queues and concurrency, measured
//      in the same run (the ratio is what to watch: these machines are noisy);
//   2. `vfleet plan` (the CLI, a fresh process) on a converged 100,000-instance fleet.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { generateFleetDocument, generateFleetYaml } from '../examples/generate.js';
import { EmbeddedEngine } from '../src/engines/embedded/embedded-engine.js';
import type { Fleet } from '../src/model/fleet.js';
import { EMPTY_STATE } from '../src/model/observed.js';
import { makePlan } from '../src/plan/make-plan.js';
import type { StateSink } from '../src/queue/action-handler.js';
import { runPlan } from '../src/queue/run-plan.js';
import { schedule } from '../src/scheduler/schedule.js';
import { normalizeFleet } from '../src/spec/normalize.js';
import { FleetState } from '../src/state/fleet-state.js';
import { queuePrefix } from '../src/state/keys.js';
import { startRedis } from './bench-redis.js';
import { converge } from './converged-fleet.js';

const CONCURRENCY = 8;

async function noopThroughput(
  connect: () => Redis,
  hosts: readonly string[],
  jobs: number,
): Promise<number> {
  const prefix = 'bench:{noop}:bull';
  const connection = connect();
  const conns: Redis[] = [connection];
  const queues = hosts.map((h) => new Queue(`host.${h}`, { connection, prefix }));
  let done = 0;
  let finish: () => void = () => undefined;
  const all = new Promise<void>((resolve) => {
    finish = resolve;
  });
  const workers = hosts.map((h) => {
    const c = connect();
    conns.push(c);
    const w = new Worker(`host.${h}`, async () => 'ok', {
      connection: c,
      prefix,
      concurrency: CONCURRENCY,
    });
    w.on('completed', () => {
      if (++done === jobs) finish();
    });
    return w;
  });
  const started = performance.now();
  // Enqueued the way apply enqueues: one addBulk per queue.
  await Promise.all(
    queues.map((q, k) =>
      q.addBulk(
        Array.from({ length: Math.ceil((jobs - k) / queues.length) }, (_, j) => {
          const i = k + j * queues.length;
          return {
            name: 'noop',
            data: { i },
            opts: { jobId: `noop.${i}`, removeOnComplete: { count: 10_000 } },
          };
        }),
      ),
    ),
  );
  await all;
  const seconds = (performance.now() - started) / 1000;
  await Promise.all(workers.map((w) => w.close()));
  await Promise.all(queues.map((q) => q.close()));
  await Promise.all(conns.map((c) => c.quit()));
  return jobs / seconds;
}

async function applyThroughput(
  connect: () => Redis,
  fleet: Fleet,
): Promise<{ rate: number; actions: number }> {
  const redis = connect();
  const state = new FleetState(redis, fleet.name);
  const engines = new Map(
    fleet.hosts.map((h) => [
      h.name,
      new EmbeddedEngine(redis, fleet.name, h, { bootLatencyMs: 0 }),
    ]),
  );
  const started = performance.now();
  const plan = makePlan(fleet, schedule(fleet), EMPTY_STATE, { id: 'bench', specHash: 'bench' });
  await state.setCurrentPlan(plan.id);
  const outcomes = await runPlan(plan, {
    connect,
    prefix: queuePrefix(fleet.name),
    engines: { engine: (h) => engines.get(h) as EmbeddedEngine },
    state: state as StateSink,
    clock: () => Date.now(),
    concurrency: CONCURRENCY,
  });
  const seconds = (performance.now() - started) / 1000;
  await redis.quit();
  const bad = outcomes.filter((o) => o.outcome !== 'done');
  if (bad.length > 0)
    throw new Error(`${bad.length} actions did not succeed: ${JSON.stringify(bad[0])}`);
  return { rate: outcomes.length / seconds, actions: outcomes.length };
}

async function main(): Promise<void> {
  const redis = await startRedis();
  try {
    console.log(
      `bench:apply on ${process.version}, redis-server on 127.0.0.1:${redis.port}, concurrency ${CONCURRENCY} per host queue`,
    );
    const fleet = normalizeFleet(generateFleetDocument({ hosts: 100, instances: 10_000, seed: 1 }));
    const noop = await noopThroughput(
      redis.connect,
      fleet.hosts.map((h) => h.name),
      10_000,
    );
    const apply = await applyThroughput(redis.connect, fleet);
    console.log(
      `apply 10,000 instances onto 100 embedded hosts from empty: ${Math.round(apply.rate).toLocaleString('en-US')} actions/s (${apply.actions.toLocaleString('en-US')} actions); no-op BullMQ jobs: ${Math.round(noop).toLocaleString('en-US')} jobs/s; no-op ÷ apply = ${(noop / apply.rate).toFixed(2)}x`,
    );

    const dir = mkdtempSync(`${tmpdir()}/vfleet-bench-plan-`);
    const options = { hosts: 1_000, instances: 100_000, seed: 2 };
    writeFileSync(`${dir}/fleet.yaml`, generateFleetYaml(options));
    const big = normalizeFleet(generateFleetDocument(options));
    await converge(redis.probe, big);
    const bin = fileURLToPath(new URL('../../bin/vfleet.js', import.meta.url));
    if (!existsSync(bin)) throw new Error(`no ${bin}`);
    const started = performance.now();
    const run = spawnSync(
      process.execPath,
      [
        ...(process.env.BENCH_PROF ? ['--cpu-prof', '--cpu-prof-dir=/tmp/prof-plan'] : []),
        bin,
        'plan',
        '--detailed-exitcode',
      ],
      {
        cwd: dir,
        encoding: 'utf8',
        maxBuffer: 512 * 1024 * 1024,
        env: { ...process.env, REDIS_URL: `redis://127.0.0.1:${redis.port}/0` },
      },
    );
    const seconds = (performance.now() - started) / 1000;
    const last = run.stdout.trim().split('\n').pop();
    console.log(
      `vfleet plan on a converged 100,000-instance fleet (1,000 hosts): ${seconds.toFixed(2)} s, exit ${run.status}: ${last}`,
    );
    rmSync(dir, { recursive: true, force: true });
    if (run.status !== 0) process.exitCode = 1;
  } finally {
    await redis.stop();
  }
}

await main();
