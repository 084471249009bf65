// npm run bench:metrics — `/metrics` of a fleet with 1,000 host queues (target: a scrape in
// ≤ 200 ms). A generated fleet (1,000 embedded hosts, 20,000 instances, seed 1) converged straight
// into a redis-server of its own (bench/converged-fleet.ts), a job on each host queue, and the
// HTTP server of src/http/ started in this process on 127.0.0.1 as `vfleet worker --http` starts
// it. Measured over HTTP:
//   - the first scrape, which waits for the first observation (a refresh of every host and the
//     three audits);
//   - scrapes with the observation cached (what every scrape is: a stale observation is renewed
//     after the scrape that found it stale has been answered), wall clock and this process's CPU;
//   - scrapes that come while an observation runs (VFLEET_HTTP_CACHE_MS=0 and one scrape right
//     after another: each renews it and the next one meets the renewal), the worst a scrape meets;
// against a baseline measured in the same run, alternated with them: BullMQ's own
// `exportPrometheusMetrics` of the 1,000 queues on one connection, nothing else (what the queue
// part of a scrape cannot go below). Prints medians and the ratios.
//
//   BENCH_HOSTS=1000 BENCH_INSTANCES=20000 BENCH_RUNS=15 npm run bench:metrics
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { Queue } from 'bullmq';
import { generateFleetDocument, generateFleetYaml } from '../examples/generate.js';
import { openSession, readValidSpec } from '../src/app/session.js';
import { renderAuditHtml } from '../src/cli/views/audit/html.js';
import { parseListenAddress } from '../src/http/listen-address.js';
import { type RunningHttpServer, startHttpServer } from '../src/http/server.js';
import { queueNameOf } from '../src/queue/plan-jobs.js';
import { normalizeFleet } from '../src/spec/normalize.js';
import { queuePrefix } from '../src/state/keys.js';
import { startRedis } from './bench-redis.js';
import { converge } from './converged-fleet.js';

const HOSTS = Number(process.env.BENCH_HOSTS ?? 1000);
const INSTANCES = Number(process.env.BENCH_INSTANCES ?? 20_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 15);
const TARGET_MS = 200;

const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)] as number;
};
const ms = (x: number) => `${x.toFixed(0)} ms`;

/** One GET on a connection of its own; its time and the body's size. */
function get(url: string): Promise<{ ms: number; bytes: number; status: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false }, (res) => {
      let bytes = 0;
      res.on('data', (d: Buffer) => {
        bytes += d.length;
      });
      res.on('end', () =>
        resolve({ ms: performance.now() - started, bytes, status: res.statusCode ?? 0 }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

/** This process's CPU (user + system) while `act` runs, and its wall clock, in ms. */
async function timed<T>(act: () => Promise<T>): Promise<{ value: T; ms: number; cpu: number }> {
  const started = performance.now();
  const cpu = process.cpuUsage();
  const value = await act();
  const used = process.cpuUsage(cpu);
  return { value, ms: performance.now() - started, cpu: (used.user + used.system) / 1000 };
}

async function main(): Promise<void> {
  const redis = await startRedis();
  const dir = mkdtempSync(`${tmpdir()}/vfleet-bench-metrics-`);
  const servers: RunningHttpServer[] = [];
  try {
    const options = { hosts: HOSTS, instances: INSTANCES, seed: 1 };
    writeFileSync(`${dir}/fleet.yaml`, generateFleetYaml(options));
    const fleet = normalizeFleet(generateFleetDocument(options));
    await converge(redis.probe, fleet);
    const spec = readValidSpec(`${dir}/fleet.yaml`);
    if (!spec.ok) throw new Error('the generated fleet does not validate');
    const env = { REDIS_URL: `redis://127.0.0.1:${redis.port}/0`, VFLEET_EMBEDDED_BOOT_MS: '0' };
    const session = await openSession(spec, { cwd: dir, env, lostAfterMs: Infinity });
    // A job waiting on every host queue, so that BullMQ's counts are not all zero.
    const connection = redis.connect();
    const queues = fleet.hosts.map(
      (h) => new Queue(queueNameOf(h.name), { connection, prefix: queuePrefix(fleet.name) }),
    );
    await Promise.all(queues.map((q) => q.add('bench', { n: 1 })));

    const start = (observationMaxAgeMs: number) =>
      startHttpServer({
        listen: parseListenAddress('127.0.0.1:0'),
        credentials: null,
        queuesWritable: false,
        process: {
          session: () => session,
          sync: async () => ({
            syncStatus: 'Synced',
            health: 'Healthy',
            revision: session.specHash,
          }),
          notReady: () => undefined,
        },
        renderReport: renderAuditHtml,
        observationMaxAgeMs,
      }).then((s) => {
        servers.push(s);
        return s;
      });
    const cached = await start(60 * 60_000);
    const first = await get(`${cached.url}/metrics`);
    if (first.status !== 200) throw new Error(`/metrics answered ${first.status}`);

    const scrapes: Array<{ ms: number; cpu: number }> = [];
    const bare: Array<{ ms: number; cpu: number }> = [];
    const behind: number[] = [];
    let bytes = 0;
    // Cached scrapes alternated with the baseline; then the scrapes that meet an observation
    // (each of those renews one after it is answered, which the next one meets: never mixed
    // with the cached ones, which would meet it too).
    for (let i = 0; i < RUNS; i++) {
      const scrape = await timed(() => get(`${cached.url}/metrics`));
      bytes = scrape.value.bytes;
      scrapes.push(scrape);
      bare.push(await timed(() => Promise.all(queues.map((q) => q.exportPrometheusMetrics()))));
    }
    const renewing = await start(0);
    await get(`${renewing.url}/metrics`); // its own first observation
    for (let i = 0; i < RUNS; i++) behind.push((await get(`${renewing.url}/metrics`)).ms);

    const observation = cached.metrics.registry.getSingleMetric(
      'vfleet_observation_duration_seconds',
    );
    const observed = (await observation?.get())?.values[0]?.value ?? Number.NaN;
    const wall = median(scrapes.map((s) => s.ms));
    const cpu = median(scrapes.map((s) => s.cpu));
    const baseWall = median(bare.map((s) => s.ms));
    const baseCpu = median(bare.map((s) => s.cpu));
    const n = HOSTS.toLocaleString('en-US');
    console.log(
      `/metrics of ${n} hosts (${n} host queues), ${INSTANCES.toLocaleString('en-US')} instances; ${RUNS} scrapes each, medians; exposition ${(bytes / 1024).toFixed(0)} KiB`,
    );
    console.log(`  first scrape (waits for the first observation): ${ms(first.ms)}`);
    console.log(`  an observation (refresh of every host, three audits): ${ms(observed * 1000)}`);
    console.log(
      `  scrape, observation cached: ${ms(wall)} wall (max ${ms(Math.max(...scrapes.map((s) => s.ms)))}), ${ms(cpu)} CPU — ${(wall / baseWall).toFixed(2)}x the baseline's wall, ${(cpu / baseCpu).toFixed(2)}x its CPU; target ≤ ${TARGET_MS} ms: ${wall <= TARGET_MS ? 'met' : 'MISSED'}`,
    );
    console.log(
      `  scrape while an observation runs: ${ms(median(behind))} wall (max ${ms(Math.max(...behind))}) — ${(median(behind) / baseWall).toFixed(2)}x the baseline's wall`,
    );
    console.log(
      `  baseline, BullMQ's exportPrometheusMetrics of the ${n} queues alone: ${ms(baseWall)} wall, ${ms(baseCpu)} CPU`,
    );
    await Promise.all(queues.map((q) => q.close()));
    connection.disconnect();
    for (const s of servers) await s.close();
    await session.close();
  } finally {
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
