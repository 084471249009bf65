// `vfleet controller --git`: the spec followed from a real git repository in a temporary folder,
// commit by commit, as Argo CD and Flux users expect (issue 14's tests):
//
//   1. the first commit is applied and reported Synced at that commit (author, subject recorded);
//   2. a commit whose spec does not validate: Degraded, the diagnostic at fleet.yaml@<commit>:L:C,
//      nothing changed;
//   3. the commit that fixes it (and scales a group) is Synced within the interval;
//   4. suspended, a commit is reported OutOfSync and not applied; resumed, it is;
//   5. a group scaled down with prune off: the removals are reported, not applied;
//   6. a commit signalled with `vfleet reconcile --now` is reconciled (the interval is a bound,
//      not a wait). A sync superseded by a newer spec is test/controller/supersede.test.ts.
import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import {
  batchReplicas,
  type FleetRepo,
  fleetRepo,
  statusJson,
  syncedAt,
} from '../helpers/git-repo.js';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';
import { fleetEvents, pollUntil, spawnVfleet, vfleet, workdir } from '../helpers/vfleet-cli.js';

interface Revision {
  kind: string;
  commit?: string;
  author?: string;
  subject?: string;
}
interface GitStatus {
  stateVersion: number;
  source: (Revision & { appliedAt: number }) | null;
  sync: {
    status: string;
    health: string;
    message: string;
    judgedBy: string;
    target?: Revision;
    suspended?: unknown;
  };
  instances: Array<{ instance: string; group: string; sync: string; health: string }>;
}
interface Event {
  type?: string;
  commit?: string;
  cause?: string;
  instances?: string[];
}

const DEADLINE_MS = 120_000;

describe('vfleet controller --git', () => {
  let server: TestRedisServer;
  let env: NodeJS.ProcessEnv;
  let repo: string;
  let home: string;
  const children: Parameters<typeof spawnVfleet>[3] = [];

  let fleet: FleetRepo;
  const git = (...args: string[]) => fleet.git(...args);
  const commit = (subject: string, edit: (spec: string) => string) => fleet.commit(subject, edit);
  const replicas = batchReplicas;

  // The spec at hand for status is a valid copy outside the repository (the repository's
  // working tree may hold the invalid commit).
  const status = () => statusJson<GitStatus>(home, env);

  const events = () => fleetEvents<Event>(home, env);

  const batch = (s: GitStatus) => s.instances.filter((i) => i.group === 'batch').length;

  const synced = (commitId: string) => syncedAt<GitStatus>(commitId, home, env, DEADLINE_MS);

  before(async () => {
    server = await startRedisServer({ args: ['--maxmemory-policy', 'noeviction'], tcp: true });
    env = { REDIS_URL: `${server.url}/0` };
    fleet = fleetRepo('the fleet, first cut');
    repo = fleet.dir;
    home = workdir(); // where the controller runs (its git cache) and status reads a valid spec
    mkdirSync(`${home}/.vfleet`, { recursive: true });
  });

  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await server?.stop();
    for (const dir of [repo, home]) if (dir) rmSync(dir, { recursive: true, force: true });
  });

  let first: string;

  it('applies the first commit and reports it Synced, with the commit recorded', async () => {
    first = git('rev-parse', 'HEAD');
    const controller = spawnVfleet(
      [
        'controller',
        '--git',
        repo,
        '--ref',
        'main',
        '--path',
        'fleet.yaml',
        '--interval',
        '3s',
        // a lease that survives a loaded machine: this file is about syncs, not failover
        '--lease-ttl',
        '3s',
        '--auto-apply',
        '--json',
      ],
      home,
      { ...env, VFLEET_EMBEDDED_BOOT_MS: '500' },
      children,
    );
    const s = await synced(first);
    assert.equal(controller.child.exitCode, null, controller.output());
    assert.equal(s.sync.health, 'Healthy');
    assert.equal(s.sync.judgedBy, 'controller');
    assert.equal(s.source?.kind, 'git');
    assert.equal(s.source?.author, 'Ada Operator <ada@example.test>');
    assert.equal(s.source?.subject, 'the fleet, first cut');
    assert.equal(batch(s), 8);
    assert.ok(s.instances.every((i) => i.sync === 'Synced' && i.health === 'Healthy'));
    // the text view says it too
    const text = vfleet(['status'], home, env).stdout;
    assert.match(text, /Sync: +Synced, Healthy/);
    assert.match(
      text,
      new RegExp(`Source: git .*:fleet\\.yaml ${first.slice(0, 7)} "the fleet, first cut"`),
    );
  });

  it('reports a commit whose spec does not validate as Degraded, at file:line:col and the commit, and changes nothing', async () => {
    const before = status();
    const bad = commit('batch: a typo', replicas('eight'));
    const s = await pollUntil(
      'Degraded with the diagnostic',
      () => {
        const now = status();
        return now.sync.health === 'Degraded' ? now : undefined;
      },
      DEADLINE_MS,
    );
    assert.match(s.sync.message, new RegExp(`fleet\\.yaml@${bad.slice(0, 7)}:\\d+:\\d+: `));
    assert.equal(s.sync.status, 'OutOfSync');
    assert.equal(s.source?.commit, first, 'the fleet stays at the last good commit');
    assert.equal(s.stateVersion, before.stateVersion, 'nothing changed');
    const invalid = events().find((e) => e.type === 'spec-invalid');
    assert.equal(invalid?.commit, bad);
  });

  it('applies the commit that fixes it within the interval', async () => {
    const fixed = commit('batch: nine workers', replicas(9));
    const s = await synced(fixed);
    assert.equal(batch(s), 9);
    assert.equal(s.sync.health, 'Healthy');
  });

  it('suspended, reports a commit OutOfSync without applying it; resumed, applies it', async () => {
    assert.equal(vfleet(['suspend', '--reason', 'change freeze'], home, env).code, 0);
    const next = commit('batch: ten workers', replicas(10));
    const held = await pollUntil(
      'OutOfSync while suspended',
      () => {
        const s = status();
        return s.sync.target?.commit === next && s.sync.status === 'OutOfSync' ? s : undefined;
      },
      DEADLINE_MS,
    );
    assert.ok(held.sync.suspended, 'status says it is suspended');
    assert.equal(batch(held), 9, 'nothing applied while suspended');
    assert.match(vfleet(['status'], home, env).stdout, /SUSPENDED/);
    assert.equal(vfleet(['resume'], home, env).code, 0);
    assert.equal(batch(await synced(next)), 10);
  });

  it('with prune off, reports instances gone from the spec and leaves them', async () => {
    const fewer = commit('batch: back to eight', replicas(8));
    const s = await pollUntil(
      'the removals reported',
      () => {
        const skipped = events().find((e) => e.type === 'prune-skipped');
        const now = status();
        return skipped && now.sync.target?.commit === fewer ? { skipped, now } : undefined;
      },
      DEADLINE_MS,
    );
    assert.deepEqual([...(s.skipped.instances ?? [])].sort(), ['batch-8', 'batch-9']);
    assert.equal(batch(s.now), 10, 'not destroyed without --prune');
    assert.equal(s.now.sync.status, 'OutOfSync');
    const extra = s.now.instances.filter((i) => i.sync === 'OutOfSync').map((i) => i.instance);
    assert.deepEqual(extra.sort(), ['batch-8', 'batch-9']);
  });

  it('reconciles a new commit at once when signalled with `vfleet reconcile --now`', async () => {
    const before = events().length;
    const next = commit('batch: eleven', replicas(11));
    assert.equal(vfleet(['reconcile', '--now'], home, env).code, 0);
    const s = await synced(next);
    assert.equal(batch(s), 11);
    assert.ok(
      events()
        .slice(before)
        .some((e) => e.type === 'reconcile-requested'),
    );
  });
});
