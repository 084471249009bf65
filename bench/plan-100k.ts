// node dist/bench/plan-100k.js [--runs 5] [--seed 1] [--hosts 1000] [--instances 100000]
//                               [--other /path/to/another/vfleet/checkout]
//
// `vfleet plan` on a converged generated fleet (100,000 instances on 1,000 embedded hosts by
// default, written straight into the state and the engines: bench/converged-fleet.ts) against
// `vfleet validate` of the same spec, each a fresh CLI process, alternating in one sitting so the
// ratio holds on a noisy machine. With --other, the same runs of another checkout (built) are
// interleaved: old/new/old/new; each checkout plans against its own redis-server, converged by
// its own bench/converged-fleet.js, so each reads the state as its own apply would have left it.
// Prints each run's wall clock and the medians.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { generateFleetDocument, generateFleetYaml } from '../examples/generate.js';
import { normalizeFleet } from '../src/spec/normalize.js';
import { startRedis } from './bench-redis.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    seed: { type: 'string', default: '1' },
    hosts: { type: 'string', default: '1000' },
    instances: { type: 'string', default: '100000' },
    other: { type: 'string' },
  },
});
const here = fileURLToPath(new URL('../..', import.meta.url));
const checkouts = [...(values.other ? [values.other] : []), here];

function median(xs: readonly number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)] as number;
}

const servers = new Map<string, Awaited<ReturnType<typeof startRedis>>>();
const dir = mkdtempSync(`${tmpdir()}/vfleet-bench-plan-`);
try {
  const options = {
    hosts: Number(values.hosts),
    instances: Number(values.instances),
    seed: Number(values.seed),
  };
  writeFileSync(`${dir}/fleet.yaml`, generateFleetYaml(options));
  const fleet = normalizeFleet(generateFleetDocument(options));
  for (const checkout of checkouts) {
    const redis = await startRedis();
    servers.set(checkout, redis);
    const { converge } = (await import(`${checkout}/dist/bench/converged-fleet.js`)) as {
      converge: (redis: unknown, fleet: unknown) => Promise<void>;
    };
    await converge(redis.probe, fleet);
  }
  const time = (checkout: string, command: string): number => {
    const port = servers.get(checkout)?.port;
    const env = { ...process.env, REDIS_URL: `redis://127.0.0.1:${port}/0` };
    const started = performance.now();
    const run = spawnSync(process.execPath, [`${checkout}/bin/vfleet.js`, command], {
      cwd: dir,
      env,
      encoding: 'utf8',
      maxBuffer: 512 * 1024 * 1024,
    });
    const seconds = (performance.now() - started) / 1000;
    if (run.status !== 0) throw new Error(`${checkout}: vfleet ${command} exited ${run.status}`);
    return seconds;
  };
  const figures = new Map(
    checkouts.map((c) => [c, { plan: [] as number[], validate: [] as number[] }]),
  );
  console.log(
    `vfleet plan and validate, ${options.instances} instances on ${options.hosts} hosts (seed ${options.seed}), converged, ${values.runs} runs each, ${process.version}`,
  );
  for (let i = 0; i < Number(values.runs); i++) {
    for (const checkout of checkouts) {
      const f = figures.get(checkout) as { plan: number[]; validate: number[] };
      const plan = time(checkout, 'plan');
      const validate = time(checkout, 'validate');
      f.plan.push(plan);
      f.validate.push(validate);
      console.log(`  ${checkout}: plan ${plan.toFixed(2)} s, validate ${validate.toFixed(2)} s`);
    }
  }
  for (const [checkout, f] of figures) {
    const plan = median(f.plan);
    const validate = median(f.validate);
    console.log(
      `${checkout}: median plan ${plan.toFixed(2)} s, validate ${validate.toFixed(2)} s, plan ÷ validate ${(plan / validate).toFixed(2)}x`,
    );
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
  for (const redis of servers.values()) await redis.stop();
}
