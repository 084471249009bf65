// `vfleet controller --http` and `vfleet worker --http` as a user runs them: the root fleet.yaml
// applied on a redis-server of the test's own, the controller serving on 127.0.0.1:0, and its
// /metrics read with a Prometheus text-format parser and checked against the fleet's own numbers —
// `vfleet status --json` (hosts by health, instances by status), `vfleet audit all --json`
// (license use per pool, patch compliance per baseline, failover coverage, the spec's hash) and
// the host queues' job counts read with BullMQ. Then a host fails: the failovers and their
// durations appear. The queue board and a report page are opened in Debian's headless Chromium:
// the DOM lists every host queue and the screenshots are pictures, not blank pages. A worker
// refuses to serve beyond loopback without credentials, and with credentials asks for them.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import parsePrometheus, { type ParsedFamily } from 'parse-prometheus-text-format';
import { queuePrefix } from '../../src/state/keys.js';
import { colours, dumpDom, inked, screenshot } from '../helpers/chromium.js';
import { basicAuth, httpCall } from '../helpers/http-call.js';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';
import {
  pollUntil,
  type RunningVfleet,
  spawnVfleet,
  vfleet,
  workdir,
} from '../helpers/vfleet-cli.js';

const VICTIM = 'hv-r1-01';
/** A bound for a loaded machine, not a timing target. */
const DEADLINE_MS = 90_000;

interface StatusJson {
  readonly hosts: ReadonlyArray<{ name: string; health: string }>;
  readonly instances: ReadonlyArray<{
    instance: string;
    host: string;
    status: string;
    failoverHost: string | null;
  }>;
}

interface AuditJson {
  readonly specHash: string;
  readonly licenses: {
    pools: ReadonlyArray<{
      pool: string;
      used: number;
      needed: number;
      entitlement: number;
      shortfall: number;
    }>;
  };
  readonly patches: {
    baselines: ReadonlyArray<{
      baseline: string;
      compliant: number;
      nonCompliant: number;
      notApplicable: number;
    }>;
  };
  readonly summary: {
    failover: { protected: number; covered: number; scenariosNotCovered: number };
  };
}

/** The value of the sample of `name` whose labels include `labels`. */
function sample(
  families: readonly ParsedFamily[],
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const family = families.find((f) => f.name === name);
  const found = family?.metrics.find((m) =>
    Object.entries(labels).every(([k, v]) => m.labels?.[k] === v),
  );
  return found?.value === undefined ? undefined : Number(found.value);
}

const countBy = <T>(items: readonly T[], key: (t: T) => string) => {
  const counts = new Map<string, number>();
  for (const i of items) counts.set(key(i), (counts.get(key(i)) ?? 0) + 1);
  return counts;
};

/** The URL a `vfleet … --http` process printed (a line or, with --json, a JSON line). */
async function servedUrl(run: RunningVfleet): Promise<string> {
  return pollUntil(
    'the server says where it listens',
    () => /(http:\/\/127\.0\.0\.1:\d+)/.exec(run.output())?.[1],
    DEADLINE_MS,
  );
}

describe('vfleet controller and worker --http', () => {
  let server: TestRedisServer;
  let env: NodeJS.ProcessEnv;
  let cwd: string;
  const children: ChildProcess[] = [];
  const dir = mkdtempSync(`${tmpdir()}/vfleet-http-cli-`);
  before(async () => {
    server = await startRedisServer({ args: ['--maxmemory-policy', 'noeviction'], tcp: true });
    env = { REDIS_URL: `${server.url}/0`, VFLEET_EMBEDDED_BOOT_MS: '0' };
    cwd = workdir();
    const applied = vfleet(['apply', 'fleet.yaml', '--auto-approve'], cwd, env);
    assert.equal(applied.code, 0, applied.stderr);
  });
  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  let serving: RunningVfleet | undefined;
  const scrape = async (url: string) => {
    // What the process said, when it stops answering: the one thing worth seeing then.
    const answer = await httpCall(`${url}/metrics`).catch((e: Error) => {
      throw new Error(
        `${e.message} (${String(e.cause)}); the process (exit ${serving?.child.exitCode} ${serving?.child.signalCode}) said:\n${serving?.output().slice(-4000)}`,
      );
    });
    assert.equal(answer.status, 200);
    return parsePrometheus(answer.body);
  };
  const status = (): StatusJson =>
    JSON.parse(vfleet(['status', '--json'], cwd, env).stdout) as StatusJson;

  it('serves metrics that are the fleet’s own numbers, a queue board and reports; counts a failover', async () => {
    // VFLEET_HTTP_CACHE_MS=0: each scrape starts the next observation (one scrape behind), so
    // the polls below converge on what the fleet is now.
    const controller = spawnVfleet(
      [
        'controller',
        '-f',
        'fleet.yaml',
        '--lease-ttl',
        '1s',
        '--interval',
        '3s',
        '--http',
        '127.0.0.1:0',
        '--json',
      ],
      cwd,
      { ...env, VFLEET_HTTP_CACHE_MS: '0' },
      children,
    );
    serving = controller;
    const url = await servedUrl(controller);
    assert.match(controller.output(), /"type":"http-listening","url":"http:\/\/127\.0\.0\.1:\d+"/);
    await pollUntil(
      'ready',
      async () => ((await httpCall(`${url}/readyz`)).status === 200 ? true : undefined),
      DEADLINE_MS,
    );
    assert.equal((await httpCall(`${url}/healthz`)).body, 'ok\n');

    // The first reconcile finds nothing to do: Synced, Healthy, at the spec's hash (a spec file
    // outside git has no commit).
    const audit = JSON.parse(
      vfleet(['audit', 'all', '--format', 'json'], cwd, env).stdout,
    ) as AuditJson;
    const synced = await pollUntil(
      'the fleet info says Synced',
      async () => {
        const families = await scrape(url);
        const info = families.find((f) => f.name === 'vfleet_fleet_info')?.metrics[0]?.labels;
        return info?.sync_status === 'Synced' ? families : undefined;
      },
      DEADLINE_MS,
    );
    assert.deepEqual(synced.find((f) => f.name === 'vfleet_fleet_info')?.metrics[0]?.labels, {
      fleet: 'lab',
      sync_status: 'Synced',
      health_status: 'Healthy',
      revision: audit.specHash,
    });
    assert.equal(sample(synced, 'vfleet_controller_leader'), 1);
    const reconciles = synced.find((f) => f.name === 'vfleet_reconcile_duration_seconds');
    assert.equal(reconciles?.type, 'HISTOGRAM');
    assert.ok(Number(reconciles?.metrics[0]?.buckets?.['+Inf']) >= 1, 'a reconcile was timed');

    // Hosts and instances as status has them.
    const before = status();
    const byHealth = countBy(before.hosts, (h) => h.health);
    for (const health of ['ok', 'suspect', 'lost', 'fenced', 'draining'])
      assert.equal(sample(synced, 'vfleet_hosts', { health }), byHealth.get(health) ?? 0, health);
    assert.equal(
      synced.find((f) => f.name === 'vfleet_host_lease_age_seconds')?.metrics.length,
      before.hosts.length,
    );
    for (const h of before.hosts)
      assert.equal(sample(synced, 'vfleet_host_health', { host: h.name, health: h.health }), 1);
    const byStatus = countBy(before.instances, (i) => i.status);
    for (const s of ['created', 'running', 'stopped', 'failed', 'missing', 'unknown'])
      assert.equal(sample(synced, 'vfleet_instances', { status: s }), byStatus.get(s) ?? 0, s);
    assert.ok((byStatus.get('running') ?? 0) > 20, 'the root fleet runs its instances');

    // Licenses, patches and failover as the audit has them.
    for (const p of audit.licenses.pools) {
      assert.equal(sample(synced, 'vfleet_license_used', { pool: p.pool }), p.used, p.pool);
      assert.equal(sample(synced, 'vfleet_license_needed', { pool: p.pool }), p.needed, p.pool);
      assert.equal(
        sample(synced, 'vfleet_license_entitlement', { pool: p.pool }),
        p.entitlement,
        p.pool,
      );
      assert.equal(
        sample(synced, 'vfleet_license_shortfall', { pool: p.pool }),
        p.shortfall,
        p.pool,
      );
    }
    assert.ok(
      audit.licenses.pools.some((p) => p.used > 0),
      'licenses are in use',
    );
    for (const b of audit.patches.baselines) {
      assert.equal(
        sample(synced, 'vfleet_patch_subjects', { baseline: b.baseline, compliance: 'compliant' }),
        b.compliant,
      );
      assert.equal(
        sample(synced, 'vfleet_patch_subjects', {
          baseline: b.baseline,
          compliance: 'non-compliant',
        }),
        b.nonCompliant,
      );
      assert.equal(
        sample(synced, 'vfleet_patch_subjects', {
          baseline: b.baseline,
          compliance: 'not-applicable',
        }),
        b.notApplicable,
      );
    }
    assert.equal(
      sample(synced, 'vfleet_failover_protected_instances'),
      audit.summary.failover.protected,
    );
    assert.equal(
      sample(synced, 'vfleet_failover_covered_instances'),
      audit.summary.failover.covered,
    );

    // Every host queue, with the job counts BullMQ itself reads.
    const redis = new Redis(`${server.url}/0`, { maxRetriesPerRequest: null });
    try {
      for (const h of before.hosts) {
        const queue = new Queue(`host.${h.name}`, {
          connection: redis,
          prefix: queuePrefix('lab'),
        });
        const counts = await queue.getJobCounts();
        for (const [state, n] of Object.entries(counts))
          assert.equal(
            sample(synced, 'bullmq_job_count', { queue: `host.${h.name}`, state }),
            n,
            `${h.name} ${state}`,
          );
        await queue.close();
      }
    } finally {
      redis.disconnect();
    }
    const completed = synced
      .find((f) => f.name === 'bullmq_job_count')
      ?.metrics.filter((m) => m.labels?.state === 'completed')
      .reduce((n, m) => n + Number(m.value), 0);
    assert.ok((completed ?? 0) > 0, 'the apply’s jobs are counted');

    // The board and a report in a browser.
    const dom = dumpDom(`${url}/queues`, `${dir}/profile-dom`);
    for (const h of before.hosts)
      assert.match(dom, new RegExp(`host\\.${h.name}\\b`), `the board lists ${h.name}`);
    const board = screenshot(`${url}/queues`, `${dir}/queues.png`, 1280, 900);
    assert.deepEqual([board.width, board.height], [1280, 900]);
    assert.ok(
      colours(board) > 50 && inked(board) > 0.05,
      `the board is drawn (${colours(board)} colours, ${inked(board)} inked)`,
    );
    const index = dumpDom(`${url}/reports/`, `${dir}/profile-index`);
    for (const k of ['licenses', 'patches', 'failover', 'all'])
      assert.match(index, new RegExp(`href="${k}"`));
    const report = screenshot(`${url}/reports/licenses`, `${dir}/licenses.png`, 1200, 1400);
    assert.ok(
      colours(report) > 20 && inked(report) > 0.02,
      `the report is drawn (${colours(report)} colours)`,
    );
    assert.match(dumpDom(`${url}/reports/licenses`, `${dir}/profile-report`), /windows-datacenter/);

    // A host fails: its protected instances restart elsewhere, each a failover with its duration.
    const protectedOnVictim = before.instances.filter(
      (i) => i.host === VICTIM && i.failoverHost !== null,
    );
    assert.ok(protectedOnVictim.length >= 2);
    assert.equal(vfleet(['host', 'fail', VICTIM], cwd, env).code, 0);
    const failedOver = await pollUntil(
      'the failovers are counted',
      async () => {
        const families = await scrape(url);
        return (sample(families, 'vfleet_failovers_total', { result: 'restarted' }) ?? 0) >=
          protectedOnVictim.length
          ? families
          : undefined;
      },
      DEADLINE_MS,
    );
    const durations = failedOver.find((f) => f.name === 'vfleet_failover_duration_seconds')
      ?.metrics[0];
    assert.equal(
      Number(durations?.count),
      sample(failedOver, 'vfleet_failovers_total', { result: 'restarted' }),
    );
    // Restarts wait for three lease ttls (3 s here) after the host's last renewal.
    assert.ok(
      Number(durations?.sum) >= Number(durations?.count) * 2.5,
      `durations ${durations?.sum} s for ${durations?.count}`,
    );
    // The host lost, and the fleet's sync as `vfleet status` has it from the leader.
    const lost = await pollUntil(
      'the metrics see the host lost and the sync status says what status says',
      async () => {
        const families = await scrape(url);
        const info = families.find((f) => f.name === 'vfleet_fleet_info')?.metrics[0]?.labels;
        const sync = (
          JSON.parse(vfleet(['status', '--json'], cwd, env).stdout) as {
            sync: { status: string; health: string; judgedBy: string };
          }
        ).sync;
        return sample(families, 'vfleet_hosts', { health: 'lost' }) === 1 &&
          sync.judgedBy === 'controller' &&
          info?.sync_status === sync.status &&
          info?.health_status === sync.health
          ? families
          : undefined;
      },
      DEADLINE_MS,
    );
    assert.equal(sample(lost, 'vfleet_host_health', { host: VICTIM, health: 'lost' }), 1);
    // Instances by status converge on what status says now (an unprotected one would be `unknown`).
    await pollUntil(
      'instances by status as status shows them',
      async () => {
        const now = countBy(status().instances, (i) => i.status);
        const families = await scrape(url);
        const same = ['created', 'running', 'stopped', 'failed', 'missing', 'unknown'].every(
          (s) => sample(families, 'vfleet_instances', { status: s }) === (now.get(s) ?? 0),
        );
        return same ? true : undefined;
      },
      DEADLINE_MS,
    );

    controller.child.kill('SIGTERM');
    assert.equal(await controller.exited, 0, controller.output());
    await assert.rejects(httpCall(`${url}/healthz`), /ECONNREFUSED/);
  });

  it('a worker refuses to serve beyond loopback without credentials, asks for the ones it is given, and never prints them', async () => {
    const open = vfleet(['worker', '-f', 'fleet.yaml', '--http', '0.0.0.0:0'], cwd, env);
    assert.equal(open.code, 1);
    assert.equal(open.stdout, '');
    assert.match(
      open.stderr,
      /^vfleet: --http 0\.0\.0\.0:0 is reachable beyond this machine: set VFLEET_HTTP_USER and VFLEET_HTTP_PASSWORD/,
    );
    assert.equal(open.stderr.trimEnd().split('\n').length, 1);

    const password = 'worker-secret-3b9d';
    writeFileSync(`${dir}/password`, `${password}\n`, { mode: 0o600 });
    const worker = spawnVfleet(
      ['worker', '-f', 'fleet.yaml', '--http', '127.0.0.1:0'],
      cwd,
      { ...env, VFLEET_HTTP_USER: 'ops', VFLEET_HTTP_PASSWORD_FILE: `${dir}/password` },
      children,
    );
    const url = await servedUrl(worker);
    const auth = (p: string) => ({ authorization: basicAuth('ops', p) });
    const refused = await httpCall(`${url}/metrics`);
    assert.equal(refused.status, 401);
    assert.match(String(refused.headers['www-authenticate']), /^Basic realm="vfleet"/);
    assert.equal(refused.body.includes(password), false);
    assert.equal((await httpCall(`${url}/queues`, { headers: auth('wrong') })).status, 401);
    assert.equal((await httpCall(`${url}/healthz`)).status, 200);
    await pollUntil(
      'ready',
      async () => ((await httpCall(`${url}/readyz`)).status === 200 ? true : undefined),
      DEADLINE_MS,
    );
    const answer = await httpCall(`${url}/metrics`, { headers: auth(password) });
    assert.equal(answer.status, 200);
    const families = parsePrometheus(answer.body);
    assert.equal(families.find((f) => f.name === 'bullmq_job_count')?.metrics.length, 9 * 7);
    // No controller leads now (it was stopped): no sync status, as `vfleet status` says none.
    assert.equal(families.find((f) => f.name === 'vfleet_fleet_info')?.metrics.length, 0);
    worker.child.kill('SIGTERM');
    assert.equal(await worker.exited, 0, worker.output());
    assert.equal(worker.output().includes(password), false);
  });
});
