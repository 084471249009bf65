// The git source's fetch on demand (what a push webhook and `vfleet reconcile --now` ask for), on
// a real git repository in a temporary folder, counting the real git CLI's fetches: requests
// that come together make one fetch; a request that comes while a fetch runs (which may have read
// the ref before the push) makes exactly one more after it, never none — held by a gate in the
// runner, so nothing here depends on timing.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { type GitRunner, GitSpecSource } from '../../src/controller/git-source.js';
import { type FleetRepo, fleetRepo } from '../helpers/git-repo.js';

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
