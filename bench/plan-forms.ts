// node dist/bench/plan-forms.js [--runs 5] [--hosts 1000] [--instances 100000]
//
// The plan's state read on each REDIS_URL form (docs/redis.md): a converged generated fleet
// written into one server, a 3-master Cluster and a Sentinel setup (master, replica, three
// Sentinels; the test helpers start them), then, alternating in one sitting, for each form: the
// read over the raw connection (fetchStateRaw: through the Sentinels' master, or to the Cluster
// node its MOVED names) against the same read through ioredis (FleetState.fetch, what the plan
// falls back to), each decoded; and `vfleet plan` as a fresh CLI process. Prints each run and
// the medians.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { generateFleetDocument, generateFleetYaml } from '../examples/generate.js';
import { normalizeFleet } from '../src/spec/normalize.js';
import { connectRedis, type RedisConnection } from '../src/state/connect-redis.js';
import { FleetState } from '../src/state/fleet-state.js';
import { fetchStateRaw, type RawTarget } from '../src/state/raw-state-read.js';
import { startRedisCluster } from '../test/helpers/redis-cluster.js';
import { freePort, startRedisProcess } from '../test/helpers/redis-process.js';
import { MASTER_NAME, startRedisSentinel } from '../test/helpers/redis-sentinel.js';
import { converge } from './converged-fleet.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    hosts: { type: 'string', default: '1000' },
    instances: { type: 'string', default: '100000' },
  },
});
const bin = fileURLToPath(new URL('../../bin/vfleet.js', import.meta.url));
const median = (xs: readonly number[]) =>
  [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)] as number;

const options = { hosts: Number(values.hosts), instances: Number(values.instances), seed: 1 };
const dir = mkdtempSync(`${tmpdir()}/vfleet-bench-forms-`);
writeFileSync(`${dir}/fleet.yaml`, generateFleetYaml(options));
const fleet = normalizeFleet(generateFleetDocument(options));

const port = await freePort();
const single = await startRedisProcess(port, [
  '--port',
  String(port),
  '--bind',
  '127.0.0.1',
  '--save',
  '',
  '--appendonly',
  'no',
  '--dir',
  dir,
]);
const cluster = await startRedisCluster();
const sentinel = await startRedisSentinel();
const forms: Array<{ name: string; url: string; raw: RawTarget }> = [
  { name: 'redis://', url: `redis://127.0.0.1:${port}/0`, raw: { host: '127.0.0.1', port } },
  {
    name: 'redis-cluster://',
    url: cluster.url(),
    raw: { seeds: cluster.nodes.map((n) => ({ host: '127.0.0.1', port: n.port })) },
  },
  {
    name: 'redis-sentinel://',
    url: sentinel.url(),
    raw: {
      sentinels: sentinel.sentinels.map((s) => ({ host: '127.0.0.1', port: s.port })),
      master: MASTER_NAME,
    },
  },
];
const connections: RedisConnection[] = [];
try {
  for (const form of forms) {
    const connection = await connectRedis({ cwd: dir, env: { REDIS_URL: form.url } });
    connections.push(connection);
    await converge(connection.redis as never, fleet);
  }
  console.log(
    `state read and vfleet plan per REDIS_URL form, ${options.instances} instances on ${options.hosts} hosts, converged, ${values.runs} runs, ${process.version}`,
  );
  const figures = forms.map(() => ({
    raw: [] as number[],
    ioredis: [] as number[],
    plan: [] as number[],
  }));
  for (let run = 0; run < Number(values.runs); run++) {
    for (const [i, form] of forms.entries()) {
      const state = new FleetState((connections[i] as RedisConnection).redis, fleet.name);
      const f = figures[i] as (typeof figures)[number];
      let t = performance.now();
      await state.decode(await fetchStateRaw(form.raw, fleet.name, 2_000));
      f.raw.push(performance.now() - t);
      t = performance.now();
      await state.decode(await state.fetch());
      f.ioredis.push(performance.now() - t);
      t = performance.now();
      const plan = spawnSync(process.execPath, [bin, 'plan'], {
        cwd: dir,
        env: { ...process.env, REDIS_URL: form.url },
        encoding: 'utf8',
        maxBuffer: 512 * 1024 * 1024,
      });
      if (plan.status !== 0)
        throw new Error(`${form.name}: vfleet plan exited ${plan.status}: ${plan.stderr}`);
      f.plan.push(performance.now() - t);
      console.log(
        `  ${form.name.padEnd(18)} raw read ${f.raw.at(-1)?.toFixed(0)} ms, ioredis read ${f.ioredis.at(-1)?.toFixed(0)} ms, plan ${((f.plan.at(-1) ?? 0) / 1000).toFixed(2)} s`,
      );
    }
  }
  for (const [i, form] of forms.entries()) {
    const f = figures[i] as (typeof figures)[number];
    console.log(
      `${form.name.padEnd(18)} median: raw read ${median(f.raw).toFixed(0)} ms, ioredis read ${median(f.ioredis).toFixed(0)} ms, plan ${(median(f.plan) / 1000).toFixed(2)} s`,
    );
  }
} finally {
  for (const c of connections) await c.close();
  await Promise.all([single.stop(), cluster.stop(), sentinel.stop()]);
  rmSync(dir, { recursive: true, force: true });
}
