// npm run bench:reconcile [-- --quick] [--hosts N] [--instances N] [--sync-instances N]
//                                      [--interval 30s] [--runs N] [--ticks N]
//
// Reconcile from git (issue 14), on the embedded engine. Fleets from the generator (seed 1)
// converged straight into a redis-server of the bench's own (bench/converged-fleet.ts). Measured:
//
//   - the reconcile tick of a converged fleet, nothing to do (target ≤ 1 s), on `--hosts 1000
//     --instances 100000` (--quick: 100 hosts, 4,000 instances): the controller of
//     src/controller/ driven in this process, a reconcile every tick (`onReconcile`'s duration,
//     what `vfleet_reconcile_duration_seconds` observes), and the whole tick around it (the
//     emulated agents, the leader lease, the hosts' health, the reconcile);
//   - commit → Synced, on `--hosts 1000 --instances 50000` (--quick: the same fleet as the tick):
//     the generator's 100,000-instance fleet has 268 instances that cannot be placed, so a sync
//     that applies anything reports it Degraded, never Healthy; at 50,000 every one is placed.
//     The fleet in a real git repository, `vfleet controller --git REPO
//     --auto-apply` (a child process, as users run it), a commit that scales a group by one, and
//     the time from the commit to the leader publishing Synced and Healthy at that commit (the
//     sync key `vfleet status` reads, polled every 100 ms):
//       - by polling, at the controller's default `--interval` (30 s; target ≤ interval + 10 s);
//       - with `vfleet reconcile --now` run right after the commit (the controller's interval
//         10 min, so only the request explains the sync);
//       - with a GitHub-signed push to `POST /hooks/git` right after the commit (the same).
//
// Baseline in the same run, for ratios: `vfleet plan` of the same fleet (a CLI process: reading
// the spec, a refresh, the plan), the median of three, for each fleet.
import { execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { parseArgs } from 'node:util';
import { generateFleetDocument, generateFleetYaml } from '../examples/generate.js';
import { fileSpecSource } from '../src/cli/commands/controller-command.js';
import { parseDuration } from '../src/cli/duration.js';
import { createController, type ReconcileReport } from '../src/controller/controller.js';
import type { Fleet } from '../src/model/fleet.js';
import { DEFAULT_LIVENESS } from '../src/model/host-health.js';
import { takeoverMsFrom } from '../src/queue/worker-lock.js';
import { normalizeFleet } from '../src/spec/normalize.js';
import type { PublishedSync } from '../src/state/control-state.js';
import { fleetKeys } from '../src/state/keys.js';
import { type BenchController, bin, spawnController, timePlan } from './bench-controller.js';
import { startRedis } from './bench-redis.js';
import { converge } from './converged-fleet.js';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    hosts: { type: 'string' },
    instances: { type: 'string' },
    'sync-instances': { type: 'string' },
    interval: { type: 'string' },
    runs: { type: 'string' },
    ticks: { type: 'string' },
  },
});
const QUICK = values.quick ?? false;
const HOSTS = Number(values.hosts ?? (QUICK ? 100 : 1000));
const INSTANCES = Number(values.instances ?? (QUICK ? 4_000 : 100_000));
const SYNC_INSTANCES = Number(values['sync-instances'] ?? (QUICK ? 4_000 : 50_000));
/** `vfleet controller`'s default --interval is 30 s; --quick shortens it to keep the run short. */
const INTERVAL = values.interval ?? (QUICK ? '10s' : '30s');
const INTERVAL_MS = parseDuration(INTERVAL, '--interval');
const RUNS = Number(values.runs ?? (QUICK ? 1 : 2));
const TICKS = Number(values.ticks ?? (QUICK ? 3 : 5));
const TICK_TARGET_MS = 1_000;
const SYNC_SLACK_MS = 10_000;
const DEADLINE_MS = 3 * 60_000;
const SECRET = `bench-${process.pid}-${Date.now()}`;

const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : (s[Math.floor((s.length - 1) / 2)] as number);
};
const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const list = (xs: readonly number[]) => xs.map(seconds).join(', ');

/** POSTs `body` as GitHub sends a push; resolves with the status. */
function postPush(url: string, body: string): Promise<number> {
  const signature = `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`;
  return new Promise((resolve, reject) => {
    const req = request(
      `${url}/hooks/git`,
      {
        method: 'POST',
        agent: false,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          'x-github-event': 'push',
          'x-hub-signature-256': signature,
        },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function until<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + DEADLINE_MS;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error(`not within ${DEADLINE_MS} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface Row {
  readonly measure: string;
  readonly value: string;
  readonly target: string;
  readonly met?: boolean;
}

function printTable(rows: readonly Row[]): void {
  const widths = [0, 1, 2].map((i) =>
    Math.max(...rows.map((r) => [r.measure, r.value, r.target][i]?.length ?? 0), 8),
  );
  const line = (cells: string[]) =>
    `  ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ')}`.trimEnd();
  console.log(line(['measure', 'value', 'target', 'met']));
  for (const r of rows)
    console.log(
      line([r.measure, r.value, r.target, r.met === undefined ? '' : r.met ? 'met' : 'NOT MET']),
    );
}

type Redis = Awaited<ReturnType<typeof startRedis>>;
type Env = NodeJS.ProcessEnv;

interface BenchFleet {
  readonly dir: string;
  readonly fleet: Fleet;
  /** Median of three `vfleet plan` runs, ms. */
  readonly planMs: number;
}

/** A generated fleet, alone in the bench's Redis, converged, and its plan timed. */
async function prepare(redis: Redis, env: Env, root: string, instances: number) {
  await redis.probe.flushall();
  const dir = `${root}/fleet-${instances}`;
  mkdirSync(dir);
  const options = { hosts: HOSTS, instances, seed: 1 };
  writeFileSync(`${dir}/fleet.yaml`, generateFleetYaml(options));
  const fleet = normalizeFleet(generateFleetDocument(options));
  await converge(redis.probe, fleet);
  const plans = [timePlan(dir, env), timePlan(dir, env), timePlan(dir, env)];
  console.log(
    `  ${instances} instances on ${HOSTS} hosts: vfleet plan ${list(plans)}; median ${seconds(median(plans))}`,
  );
  return { dir, fleet, planMs: median(plans) } satisfies BenchFleet;
}

/** The controller in this process on a converged fleet, reconciling every tick. */
async function measureTicks(f: BenchFleet, env: Env): Promise<Row[]> {
  const reports: ReconcileReport[] = [];
  const controller = await createController(fileSpecSource(`${f.dir}/fleet.yaml`), {
    policy: DEFAULT_LIVENESS,
    intervalMs: 0,
    autoApply: true,
    concurrency: 4,
    takeoverMs: takeoverMsFrom(env, undefined),
    externalWorkers: false,
    env,
    cwd: f.dir,
    onReconcile: (r) => reports.push(r),
  });
  const ticks: number[] = [];
  const cpu: number[] = [];
  try {
    for (let i = 0; i <= TICKS; i++) {
      const started = performance.now();
      const usage = process.cpuUsage();
      await controller.tick(true);
      const used = process.cpuUsage(usage);
      // The first tick takes the lease and sees every host for the first time: not counted.
      if (i === 0) continue;
      ticks.push(performance.now() - started);
      cpu.push((used.user + used.system) / 1000);
    }
  } finally {
    await controller.close();
  }
  const counted = reports.slice(1);
  const notSynced = counted.filter((r) => r.status !== 'Synced').length;
  if (notSynced > 0) throw new Error(`${notSynced} reconciles found something to do`);
  const reconcileMs = median(counted.map((r) => r.durationMs));
  const tickMs = median(ticks);
  console.log(
    `  ticks (${TICKS}, after a first): reconcile ${list(counted.map((r) => r.durationMs))}; whole tick ${list(ticks)}; CPU ${list(cpu)}`,
  );
  const n = f.fleet.groups.reduce((sum, g) => sum + g.replicas, 0);
  return [
    {
      measure: `baseline: vfleet plan, ${n} instances (median of 3)`,
      value: seconds(f.planMs),
      target: '',
    },
    {
      measure: `reconcile, converged, nothing to do (median of ${TICKS})`,
      value: seconds(reconcileMs),
      target: `≤ ${seconds(TICK_TARGET_MS)}`,
      met: reconcileMs <= TICK_TARGET_MS,
    },
    {
      measure: 'whole tick: agents, lease, hosts’ health, reconcile',
      value: seconds(tickMs),
      target: `≤ ${seconds(TICK_TARGET_MS)}`,
      met: tickMs <= TICK_TARGET_MS,
    },
    { measure: '  its CPU in this process', value: seconds(median(cpu)), target: '' },
    { measure: 'reconcile ÷ plan', value: `${(reconcileMs / f.planMs).toFixed(2)}x`, target: '' },
  ];
}

/**
 * The fleet in a git repository that `commit()` changes: a group scaled by one each time — one
 * with nothing that could leave the new replica unplaced (no license, no failover reserve, no
 * spread or labels), so each sync can end Healthy.
 */
function fleetRepository(f: BenchFleet, root: string) {
  const repo = `${root}/repo`;
  mkdirSync(repo);
  copyFileSync(`${f.dir}/fleet.yaml`, `${repo}/fleet.yaml`);
  const git = (...args: string[]) =>
    execFileSync('git', args, {
      cwd: repo,
      encoding: 'utf8',
      env: {
        ...process.env,
        GIT_AUTHOR_NAME: 'bench',
        GIT_AUTHOR_EMAIL: 'bench@example.test',
        GIT_COMMITTER_NAME: 'bench',
        GIT_COMMITTER_EMAIL: 'bench@example.test',
      },
    }).trim();
  git('init', '-q', '-b', 'main');
  git('add', 'fleet.yaml');
  git('commit', '-q', '-m', 'the fleet');
  const group = f.fleet.groups.find(
    (g) =>
      g.licenses.length === 0 &&
      !g.failover &&
      g.placement.spread === undefined &&
      g.placement.avoid.length === 0 &&
      Object.keys(g.placement.requireLabels).length === 0,
  );
  if (!group) throw new Error('the fleet has no group to scale freely');
  let replicas = group.replicas;
  const replicasOf = new RegExp(
    `(- name: ${group.name}\\n(?:(?! *- name:).*\\n)*? +replicas: )\\d+`,
  );
  return {
    repo,
    group: group.name,
    head: () => git('rev-parse', 'HEAD'),
    /** Scales the group by one and commits: the commit, and when it was made. */
    commit() {
      replicas++;
      const text = readFileSync(`${repo}/fleet.yaml`, 'utf8');
      const edited = text.replace(replicasOf, `$1${replicas}`);
      if (edited === text) throw new Error(`no replicas of ${group.name} to change`);
      writeFileSync(`${repo}/fleet.yaml`, edited);
      git('commit', '-q', '-am', `${group.name}: ${replicas}`);
      return { id: git('rev-parse', 'HEAD'), at: performance.now() };
    },
  };
}

/** Commit → Synced and Healthy: by polling, by `vfleet reconcile --now`, by the push webhook. */
async function measureSyncs(
  f: BenchFleet,
  redis: Redis,
  env: Env,
  root: string,
  running: (c: BenchController | undefined) => void,
): Promise<Row[]> {
  const git = fleetRepository(f, root);
  const home = `${root}/home`;
  mkdirSync(home);
  copyFileSync(`${f.dir}/fleet.yaml`, `${home}/fleet.yaml`); // for `vfleet reconcile --now`
  const keys = fleetKeys(f.fleet.name);
  /** Resolves with the time the leader published Synced and Healthy at `commit`. */
  const synced = (commit: string) =>
    until(`Synced at ${commit.slice(0, 7)}`, async () => {
      const raw = await redis.probe.get(keys.sync);
      const s = raw === null ? undefined : (JSON.parse(raw) as PublishedSync);
      if (s?.status === 'Synced' && s.target?.commit === commit && s.health !== 'Healthy')
        throw new Error(`Synced at ${commit.slice(0, 7)} but ${s.health}: ${s.message}`);
      return s?.status === 'Synced' &&
        s.health === 'Healthy' &&
        s.target?.commit === commit &&
        s.synced?.commit === commit
        ? performance.now()
        : undefined;
    });

  // By polling, at the interval.
  let controller = spawnController(
    ['--git', git.repo, '--interval', INTERVAL, '--auto-apply'],
    home,
    env,
  );
  running(controller);
  await until('the controller leading', async () =>
    controller.events.some((e) => e.type === 'leader') ? true : undefined,
  );
  await synced(git.head());
  const polled: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const c = git.commit();
    polled.push((await synced(c.id)) - c.at);
  }
  await controller.stop();

  // Asked: `vfleet reconcile --now`, and the push webhook; the interval out of the way.
  controller = spawnController(
    ['--git', git.repo, '--interval', '10m', '--auto-apply', '--http', '127.0.0.1:0'],
    home,
    { ...env, VFLEET_WEBHOOK_SECRET: SECRET },
  );
  running(controller);
  const events = controller.events;
  const url = await until('the controller serving HTTP', async () => {
    const listening = events.find((e) => e.type === 'http-listening');
    return typeof listening?.url === 'string' ? listening.url : undefined;
  });
  // Measured once it leads (the sync key still holds the last controller's judgement).
  await until('the controller leading', async () =>
    events.some((e) => e.type === 'leader') ? true : undefined,
  );
  await synced(git.head());
  const now: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const c = git.commit();
    execFileSync(process.execPath, [bin, 'reconcile', '--now'], { cwd: home, env });
    now.push((await synced(c.id)) - c.at);
  }
  const pushed: number[] = [];
  const fetched: number[] = [];
  const reconciled: number[] = [];
  const after = (type: string, since: number) =>
    events.find((e) => e.type === type && e.at >= since)?.at;
  for (let i = 0; i < RUNS; i++) {
    const c = git.commit();
    const wall = Date.now();
    const body = JSON.stringify({ ref: 'refs/heads/main', after: c.id });
    const status = await postPush(url, body);
    if (status !== 202) throw new Error(`the webhook answered ${status}`);
    pushed.push((await synced(c.id)) - c.at);
    const changed = after('spec-changed', wall);
    const done = after('reconciled', wall);
    if (changed !== undefined && done !== undefined) {
      fetched.push(changed - wall);
      reconciled.push(done - changed);
    }
  }
  await controller.stop();
  running(undefined);
  console.log(
    `  commits: ${git.group} scaled by one each (${RUNS * 3} in all); --interval ${INTERVAL} for polling, 10m for the asked syncs`,
  );
  const n = f.fleet.groups.reduce((sum, g) => sum + g.replicas, 0);
  return [
    {
      measure: `baseline: vfleet plan, ${n} instances (median of 3)`,
      value: seconds(f.planMs),
      target: '',
    },
    {
      measure: `commit → Synced, polling every ${INTERVAL} (${RUNS})`,
      value: list(polled),
      target: `≤ interval + 10 s = ${seconds(INTERVAL_MS + SYNC_SLACK_MS)}`,
      met: Math.max(...polled) <= INTERVAL_MS + SYNC_SLACK_MS,
    },
    { measure: `commit → Synced, vfleet reconcile --now (${RUNS})`, value: list(now), target: '' },
    { measure: `commit → Synced, push webhook (${RUNS})`, value: list(pushed), target: '' },
    {
      measure: '  push → spec-changed (tick, fetch, new session)',
      value: list(fetched),
      target: '',
    },
    {
      measure: '  spec-changed → reconciled (plan, one create)',
      value: list(reconciled),
      target: '',
    },
    {
      measure: 'push webhook → Synced ÷ plan (median)',
      value: `${(median(pushed) / f.planMs).toFixed(2)}x`,
      target: '',
    },
  ];
}

async function main(): Promise<void> {
  const redis = await startRedis();
  let controller: BenchController | undefined;
  process.once('SIGTERM', () => {
    controller?.child.kill('SIGKILL');
    void redis.stop().finally(() => process.exit(143));
  });
  const root = mkdtempSync(`${tmpdir()}/vfleet-bench-reconcile-`);
  try {
    const env = {
      ...process.env,
      REDIS_URL: `redis://127.0.0.1:${redis.port}/0`,
      VFLEET_EMBEDDED_BOOT_MS: '0',
    };
    console.log(
      `vfleet bench:reconcile — embedded hosts, generated fleets (seed 1), converged; ${process.version}${QUICK ? '; --quick' : ''}`,
    );
    const big = await prepare(redis, env, root, INSTANCES);
    const rows = await measureTicks(big, env);
    const fitting =
      SYNC_INSTANCES === INSTANCES ? big : await prepare(redis, env, root, SYNC_INSTANCES);
    rows.push(
      ...(await measureSyncs(fitting, redis, env, root, (c) => {
        controller = c;
      })),
    );
    printTable(rows);
  } finally {
    await controller?.stop();
    await redis.stop();
    rmSync(root, { recursive: true, force: true });
  }
}

await main();
