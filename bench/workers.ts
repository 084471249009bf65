// npm run bench:workers — `vfleet worker` processes on three machines against one
// (docs/many-machines.md): the machines are network namespaces on this machine
// (test/helpers/netns-machines.ts), each worker reaching the hub's redis-server by address. A
// generated fleet is applied from empty by `vfleet apply --external-workers` on an operator's
// machine, served by one worker, then by three; each apply's actions/s is read from its jobs
// (the first start to the last finish, BullMQ's own stamps: the CLI's start and plan are not
// counted). Two settings of the embedded engine's boot latency: 0 (the workers' CPU is the
// limit: three processes on this 2-core machine, beside Redis and the apply) and 500 ms (a host
// that takes time to act: the workers' job slots are the limit, one per host queue per worker;
// the fleet has no patch baselines, whose rolling patches would measure one replica after
// another). The ratio is three workers'
// rate over one's, measured in the same run, alternating; medians of --runs (3).
//
// Root is needed (ip netns). Options: --runs N, --instances N (600), --hosts N (30).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { stringify } from 'yaml';
import { generateFleetDocument } from '../examples/generate.js';
import { createNetnsMachines } from '../test/helpers/netns-machines.js';
import { finishedJobs } from '../test/helpers/queue-jobs.js';
import type { RunningVfleet } from '../test/helpers/vfleet-cli.js';

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const RUNS = arg('runs', 3);
const INSTANCES = arg('instances', 600);
const HOSTS = arg('hosts', 30);
/** Jobs each worker runs at once per host queue: one, so that job slots can be the limit. */
const CONCURRENCY = 1;
const BOOTS_MS = [0, 500];
const DEADLINE_MS = 300_000;

const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};

async function waitFor(what: string, ok: () => boolean): Promise<void> {
  const end = Date.now() + DEADLINE_MS;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`not within ${DEADLINE_MS} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function main(): Promise<void> {
  const net = createNetnsMachines({ subnet: 42, machines: ['op', 'w1', 'w2', 'w3'] });
  await net.start();
  const dir = mkdtempSync(`${tmpdir()}/vfleet-bench-workers-`);
  try {
    // Without patch baselines: a rolling patch runs one replica after another, which would
    // measure the waves' latency, not the workers.
    const doc = generateFleetDocument({ hosts: HOSTS, instances: INSTANCES, seed: 7 });
    for (const group of doc.spec.instances ?? [])
      delete (group as { patchBaseline?: string }).patchBaseline;
    writeFileSync(`${dir}/fleet.yaml`, stringify(doc));
    const fleet = doc.metadata.name;
    const redis = net.client(0);
    console.log(
      `bench:workers on ${process.version}: ${INSTANCES} instances onto ${HOSTS} embedded hosts from empty, vfleet worker --concurrency ${CONCURRENCY} on 1 or 3 network-namespace machines, ${RUNS} runs alternating`,
    );
    /** One apply from empty served by `count` workers: actions/s from the jobs' own stamps. */
    const applyWith = async (count: number, bootMs: number) => {
      await redis.flushdb();
      const env = { REDIS_URL: net.redisUrl(0), VFLEET_EMBEDDED_BOOT_MS: String(bootMs) };
      const workers: RunningVfleet[] = ['w1', 'w2', 'w3']
        .slice(0, count)
        .map((m) => net.vfleet(m, ['worker', '--concurrency', String(CONCURRENCY)], dir, env));
      for (const w of workers) {
        await waitFor('a worker serves', () => {
          if (w.child.exitCode !== null) throw new Error(`a worker exited: ${w.output()}`);
          return /serving \d+ host queues/.test(w.output());
        });
      }
      const apply = net.vfleet('op', ['apply', '--auto-approve', '--external-workers'], dir, env);
      const code = await apply.exited;
      if (code !== 0) throw new Error(`apply exited ${code}: ${apply.output().slice(-2000)}`);
      const jobs = await finishedJobs(redis, 'completed', fleet);
      if (jobs.length === 0) throw new Error(`no completed jobs of fleet ${fleet}`);
      const from = Math.min(...jobs.map((j) => Number(j.processedOn)));
      const to = Math.max(...jobs.map((j) => Number(j.finishedOn)));
      await net.stopAll();
      return { actions: jobs.length, rate: jobs.length / ((to - from) / 1000) };
    };
    for (const bootMs of BOOTS_MS) {
      const rates = new Map<number, number[]>([
        [1, []],
        [3, []],
      ]);
      let actions = 0;
      for (let run = 0; run < RUNS; run++) {
        for (const count of run % 2 === 0 ? [1, 3] : [3, 1]) {
          const r = await applyWith(count, bootMs);
          actions = r.actions;
          rates.get(count)?.push(r.rate);
        }
      }
      const one = median(rates.get(1) as number[]);
      const three = median(rates.get(3) as number[]);
      const shown = (xs: readonly number[]) => xs.map((x) => Math.round(x)).join(', ');
      console.log(
        `boot ${bootMs} ms, ${actions} actions: 1 worker ${Math.round(one)} actions/s (${shown(rates.get(1) as number[])}); 3 workers ${Math.round(three)} actions/s (${shown(rates.get(3) as number[])}); 3 ÷ 1 = ${(three / one).toFixed(2)}x`,
      );
    }
  } finally {
    await net.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
