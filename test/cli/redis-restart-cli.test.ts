// Redis killed with SIGKILL in the middle of an apply (issue 17, fault 1): the folder's private
// redis-server, under an apply whose jobs two `vfleet worker`s serve, each the only one serving
// its hosts. Nobody restarts Redis but vfleet (docs/redis.md, "Faults"): the apply and both
// workers must resume by themselves — the apply reads the fleet again and enqueues what the
// restart lost (AOF everysec: up to a second of writes, jobs included) — and converge: exit 0,
// every instance of the spec on exactly one host, never two copies at any sample, no action
// reported done twice in a round, no stack trace.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';
import {
  applyUnderWay,
  assertConverged,
  assertNoneTwiceInARound,
  HOSTS,
  rounds,
} from '../helpers/fleet-faults.js';
import { pollUntil, spawnVfleet, vfleet, workdir } from '../helpers/vfleet-cli.js';

describe('the private redis-server SIGKILLed mid-apply', () => {
  const children: ChildProcess[] = [];
  let cwd = '';
  let watcher: Redis | undefined;
  after(() => {
    watcher?.disconnect();
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    if (cwd) {
      vfleet(['down'], cwd);
      rmSync(cwd, { recursive: true, force: true });
    }
  });

  it('the apply and every vfleet worker resume by themselves and converge', {
    timeout: 180_000,
  }, async (t) => {
    const t0 = Date.now();
    const marks: string[] = [];
    const mark = (what: string) =>
      marks.push(`${what} +${((Date.now() - t0) / 1000).toFixed(1)} s`);
    cwd = workdir();
    assert.equal(vfleet(['status'], cwd).code, 0, 'starts the private redis-server');
    mark('redis');
    const pidfile = `${cwd}/.vfleet/redis/redis.pid`;
    watcher = new Redis({ path: `${cwd}/.vfleet/redis/redis.sock`, maxRetriesPerRequest: 1 });
    watcher.on('error', () => undefined); // it is killed on purpose
    // Slow boots: the apply runs for seconds, and the kill lands in its middle.
    const env = { VFLEET_EMBEDDED_BOOT_MS: '150' };
    const half = Math.ceil(HOSTS.length / 2);
    const workers = [HOSTS.slice(0, half), HOSTS.slice(half)].map((hosts) =>
      spawnVfleet(['worker', '--hosts', hosts.join(',')], cwd, env, children),
    );
    for (const w of workers) {
      await pollUntil('a worker serving', () => (/serving/.test(w.output()) ? true : undefined));
    }
    mark('workers serving');
    const apply = await applyUnderWay(cwd, env, children, watcher);
    mark('apply under way');
    const killed = Number(readFileSync(pidfile, 'utf8'));
    process.kill(killed, 'SIGKILL');
    const killedAt = Date.now();
    const resumedAfter = pollUntil('the apply resuming', () =>
      /resuming \(round 2\)/.test(apply.output()) ? Date.now() - killedAt : undefined,
    ).catch(() => -1);
    // A bound for a loaded machine, below the test's own, so that a hang says where it is.
    const code = await Promise.race([
      apply.exited,
      delay(150_000, undefined, { ref: false }).then(() => {
        throw new Error(
          `the apply did not end within 150 s of the kill:\n--- apply\n${apply.output().slice(-3000)}\n${workers.map((w, i) => `--- worker ${i + 1}\n${w.output().slice(-2000)}`).join('\n')}`,
        );
      }),
    ]);
    mark('apply ended');
    const { samples, doubled } = await apply.sampler.stop();
    const stdout = apply.stdout();
    const output = apply.output();

    assert.equal(code, 0, output);
    assert.match(
      output,
      /Resumed once after Redis came back as another server: \d+ actions? enqueued again/,
    );
    assert.match(output, /Apply complete: 32 actions done\./);
    assert.doesNotMatch(output, /\n\s+at |internal error/);
    assert.notEqual(Number(readFileSync(pidfile, 'utf8')), killed, 'vfleet restarted it');
    assert.deepEqual(doubled, [], `never two copies (${samples} samples)`);
    assertNoneTwiceInARound(stdout);
    const [first, second] = rounds(stdout);
    assert.ok(first && second, stdout);
    const lost = first.done.filter((a) => second.planned.includes(a));
    t.diagnostic(
      `resumed ${await resumedAfter} ms after the SIGKILL; the apply exited ${Date.now() - killedAt} ms after it; round 1 reported ${first.done.length} done, round 2 enqueued ${second.planned.length} (${lost.length} of them reported done before: lost with the last second of the AOF, run again); ${samples} samples of the hosts`,
    );

    // Both workers still serve (each the only one for its hosts: the apply's end proves they
    // took jobs again), and stop cleanly.
    for (const w of workers) {
      assert.equal(w.child.exitCode, null, w.output());
      w.child.kill('SIGTERM');
      assert.equal(await w.exited, 0, w.output());
      assert.doesNotMatch(w.output(), /\n\s+at |internal error/);
    }
    mark('workers stopped');
    await assertConverged(watcher, cwd, {});
    mark('converged');
    t.diagnostic(marks.join(', '));
  });
});
