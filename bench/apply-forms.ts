// npm run bench:apply-forms [-- --instances 100000] [--hosts 1000] [--fleets 1]
//
// `vfleet apply --auto-approve` from empty through a 3-master Redis Cluster on loopback against
// one redis-server, in the same run (issue 17's figure): the generated fleet (seed 1; with
// --fleets N, N fleets of instances/N each, seeds 1…N, applied at once, each from its own folder),
// each apply a fresh CLI process on the embedded engine (no boot latency) timed with its peak
// RSS. Then where the keys went: every key of a fleet is in its one slot (docs/redis.md, "A fleet
// lives in one slot"), so one fleet sits on one master and several fleets spread over the masters.
// The point is that it works and spreads, not that loopback is faster: a Cluster client follows
// MOVED and keeps a slot map, a single server answers everything.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { generateFleetYaml } from '../examples/generate.js';
import { startRedisCluster } from '../test/helpers/redis-cluster.js';
import { tcpCommand } from '../test/helpers/redis-process.js';
import { startRedis } from './bench-redis.js';

const { values } = parseArgs({
  options: {
    instances: { type: 'string', default: '100000' },
    hosts: { type: 'string', default: '1000' },
    fleets: { type: 'string', default: '1' },
  },
});
const bin = fileURLToPath(new URL('../../bin/vfleet.js', import.meta.url));
const fleets = Number(values.fleets);
const dir = mkdtempSync(`${tmpdir()}/vfleet-bench-apply-forms-`);

interface Applied {
  readonly wallMs: number;
  readonly code: number | null;
  readonly peakRssKiB: number;
  readonly last: string;
}

/** One `vfleet apply --auto-approve` in `cwd`, under /usr/bin/time for its peak RSS. */
function apply(cwd: string, url: string): Promise<Applied> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(
      '/usr/bin/time',
      ['-f', '%M', '-o', `${cwd}/rss`, process.execPath, bin, 'apply', '--auto-approve'],
      {
        cwd,
        env: { ...process.env, REDIS_URL: url, VFLEET_EMBEDDED_BOOT_MS: '0' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let tail = '';
    const keep = (chunk: Buffer) => {
      tail = (tail + chunk.toString('utf8')).slice(-2000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.once('error', reject);
    child.once('close', (code) => {
      const lines = tail.trim().split('\n');
      resolve({
        wallMs: performance.now() - started,
        code,
        peakRssKiB: Number(readFileSync(`${cwd}/rss`, 'utf8').trim().split('\n').at(-1)),
        last: lines.at(-1) ?? '',
      });
    });
  });
}

async function applyAll(form: string, url: string): Promise<void> {
  const started = performance.now();
  const runs = await Promise.all(
    Array.from({ length: fleets }, (_, i) => apply(`${dir}/${form}-${i + 1}`, url)),
  );
  const wall = (performance.now() - started) / 1000;
  for (const [i, r] of runs.entries()) {
    console.log(
      `  ${form} fleet ${i + 1}: ${(r.wallMs / 1000).toFixed(1)} s, exit ${r.code}, peak RSS ${(r.peakRssKiB / 1024).toFixed(0)} MiB — ${r.last}`,
    );
  }
  results.set(form, wall);
}

const results = new Map<string, number>();
const single = await startRedis();
const cluster = await startRedisCluster({ args: ['--maxmemory-policy', 'noeviction'] });
try {
  const perFleet = Math.floor(Number(values.instances) / fleets);
  for (const form of ['single', 'cluster']) {
    for (let i = 1; i <= fleets; i++) {
      mkdirSync(`${dir}/${form}-${i}`);
      writeFileSync(
        `${dir}/${form}-${i}/fleet.yaml`,
        generateFleetYaml({ hosts: Number(values.hosts), instances: perFleet, seed: i }),
      );
    }
  }
  console.log(
    `vfleet apply from empty: ${fleets} fleet(s) of ${perFleet} instances on ${values.hosts} hosts each, ${process.version}`,
  );
  await applyAll('single', `redis://127.0.0.1:${single.port}/0`);
  await applyAll('cluster', cluster.url());
  const one = results.get('single') as number;
  const many = results.get('cluster') as number;
  console.log(
    `\nwall: one redis-server ${one.toFixed(1)} s, 3-master Cluster ${many.toFixed(1)} s (Cluster ÷ single ${(many / one).toFixed(2)}x)`,
  );
  const sizes: string[] = [];
  for (const node of cluster.nodes) {
    const reply = await tcpCommand(node.port, ['DBSIZE']);
    sizes.push(`${node.port}: ${reply.trim().replace(/^:/, '')} keys`);
  }
  console.log(`keys per Cluster master: ${sizes.join(', ')}`);
} finally {
  await cluster.stop();
  await single.stop();
  rmSync(dir, { recursive: true, force: true });
}
