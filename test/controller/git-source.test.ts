// The git source's fetch on demand (what a push webhook and `vfleet reconcile --now` ask for), on
// a real git repository in a temporary folder, counting the real git CLI's fetches: requests
// that come together make one fetch; a request that comes while a fetch runs (which may have read
// the ref before the push) makes exactly one more after it, never none — held by a gate in the
// runner, so nothing here depends on timing. And a push signalled while the leader changes is
// not lost: a controller that takes the lead fetches first (two real controllers on a real
// redis-server, ticked by the test).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { type ControllerEvent, createController } from '../../src/controller/controller.js';
import { type GitRunner, GitSpecSource } from '../../src/controller/git-source.js';
import { fleetKeys } from '../../src/state/keys.js';
import { batchReplicas, type FleetRepo, fleetRepo } from '../helpers/git-repo.js';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';
import { pollUntil } from '../helpers/vfleet-cli.js';

describe('the git source fetching on demand', () => {
  let repo: string;
  let cache: string;
  let source: GitSpecSource;
  let fetches = 0;
  /** While set, a fetch waits for it: the test decides when the fetch in flight ends. */
  let gate: Promise<void> | undefined;
  let fetchStarted: (() => void) | undefined;

  let fleet: FleetRepo;
  const commit = (subject: string) => fleet.commit(subject, (spec) => `${spec}# ${subject}\n`);

  before(async () => {
    fleet = fleetRepo();
    repo = fleet.dir;
    cache = mkdtempSync(`${tmpdir()}/vfleet-git-cache-`);
    const real = (args: readonly string[], cwd?: string) =>
      new Promise<string>((resolve, reject) => {
        try {
          resolve(execFileSync('git', args as string[], { cwd, encoding: 'utf8' }));
        } catch (e) {
          reject(e);
        }
      });
    const counting: GitRunner = async (args, cwd) => {
      if (args[0] !== 'fetch') return real(args, cwd);
      fetches++;
      const out = await real(args, cwd); // the ref as it is now
      fetchStarted?.();
      await gate;
      return out;
    };
    source = new GitSpecSource({
      url: repo,
      ref: 'main',
      path: 'fleet.yaml',
      cacheDir: cache,
      intervalMs: 3_600_000, // only asked fetches
      git: counting,
    });
    await source.start();
  });
  after(() => {
    source?.close();
    for (const dir of [repo, cache]) if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('fetches once for requests that come together', async () => {
    assert.equal(fetches, 1, 'the first fetch, at start');
    const next = commit('second');
    await Promise.all(Array.from({ length: 10 }, () => source.fetchNow()));
    assert.equal(fetches, 2);
    assert.equal(source.revision()?.commit, next);
  });

  it('fetches once more after the fetch in flight for requests made while it runs', async () => {
    let open: () => void = () => undefined;
    gate = new Promise((resolve) => {
      open = resolve;
    });
    const started = new Promise<void>((resolve) => {
      fetchStarted = resolve;
    });
    const first = source.fetchNow();
    await started; // a fetch in flight, which read the ref before the push below
    fetchStarted = undefined;
    const pushed = commit('third, pushed while a fetch runs');
    const during = Array.from({ length: 5 }, () => source.fetchNow());
    gate = undefined;
    open();
    await first;
    await Promise.all(during);
    assert.equal(fetches, 4, 'the one in flight, then one for the five requests');
    assert.equal(source.revision()?.commit, pushed, 'the push is not lost');
  });
});

describe('a push signalled while the leader changes', () => {
  let server: TestRedisServer;
  let fleet: FleetRepo;
  const dirs: string[] = [];
  before(async () => {
    server = await startRedisServer({ args: ['--maxmemory-policy', 'noeviction'], tcp: true });
    fleet = fleetRepo();
    dirs.push(fleet.dir);
  });
  after(async () => {
    await server?.stop();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  /** A controller on its own git source (its own cache), fetching every hour unless asked. */
  async function controllerOnGit(events: ControllerEvent[]) {
    const cache = mkdtempSync(`${tmpdir()}/vfleet-git-cache-`);
    dirs.push(cache);
    const source = new GitSpecSource({
      url: fleet.dir,
      ref: 'main',
      path: 'fleet.yaml',
      cacheDir: cache,
      intervalMs: 3_600_000,
    });
    await source.start();
    const controller = await createController(source, {
      policy: { ttlMs: 60_000, graceMs: 10_000 },
      intervalMs: 3_600_000,
      autoApply: false,
      concurrency: 1,
      takeoverMs: 5_000,
      externalWorkers: true,
      env: { ...process.env, REDIS_URL: `${server.url}/0`, VFLEET_EMBEDDED_BOOT_MS: '0' },
      cwd: cache,
      onEvent: (e) => events.push(e),
    });
    return { source, controller };
  }

  it('is fetched by the controller that takes the lead', async () => {
    const leaderEvents: ControllerEvent[] = [];
    const standbyEvents: ControllerEvent[] = [];
    const leader = await controllerOnGit(leaderEvents);
    const standby = await controllerOnGit(standbyEvents);
    try {
      await leader.controller.tick(true);
      await standby.controller.tick(true);
      assert.notEqual(leader.controller.token(), null);
      assert.equal(standby.controller.token(), null, 'the second stands by');
      // A push while the leader goes: the request lands before anyone reads it as new.
      const pushed = fleet.commit('batch: nine', batchReplicas(9));
      await server.client().incr(fleetKeys('lab').reconcileRequest);
      await leader.controller.close();
      leader.source.close();
      await standby.controller.tick(true); // takes the lead, and fetches
      assert.notEqual(standby.controller.token(), null);
      await pollUntil(
        'the new leader fetched the push',
        () => (standby.source.revision()?.commit === pushed ? true : undefined),
        30_000,
      );
      await standby.controller.tick(true); // follows it
      const changed = standbyEvents.find((e) => e.type === 'spec-changed');
      assert.equal(changed?.commit, pushed);
    } finally {
      await standby.controller.close();
      standby.source.close();
    }
  });
});
