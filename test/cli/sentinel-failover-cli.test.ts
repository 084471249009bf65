// A Sentinel failover in the middle of `vfleet apply` (issue 17), against a real master, replica
// and three Sentinels the test starts (helpers/redis-sentinel.ts): `SENTINEL FAILOVER` once the
// first actions are done. Redis replicates asynchronously, so what the old master had not passed
// on is lost; the apply sees that the master changed, reads the fleet again and resumes — runs
// what was lost again — and finishes (exit 0), never a stack trace or the password. The plan
// once the failover is over says what was still lost (a diagnostic: an apply that ends before
// the Sentinels switch cannot see it); the next apply converges the fleet, and the plan after it
// is empty.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { startRedisSentinel, type TestRedisSentinel } from '../helpers/redis-sentinel.js';
import { pollUntil, spawnVfleet, vfleet, workdir } from '../helpers/vfleet-cli.js';

const PASSWORD = 'failover-Canary-81c3';
const CONVERGED = /Plan: 0 to create, 0 to move, 0 to update, 0 to patch, 0 to destroy\./;

describe('a Sentinel failover mid-apply', () => {
  let sentinel: TestRedisSentinel;
  let cwd: string;
  const children: ChildProcess[] = [];

  before(async () => {
    sentinel = await startRedisSentinel({ password: PASSWORD, replicas: 1, sentinels: 3 });
    cwd = workdir();
  });
  after(async () => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    await sentinel?.stop();
    if (cwd) rmSync(cwd, { recursive: true, force: true });
  });

  it('the apply goes on on the new master or says what was lost; the next apply converges', async (t) => {
    const env = { REDIS_URL: sentinel.url({ db: 2 }) };
    const oldMaster = await sentinel.masterPort();
    // Slow boots: the apply takes seconds, and the failover lands in its middle.
    const apply = spawnVfleet(
      ['apply', '--auto-approve'],
      cwd,
      { ...env, VFLEET_EMBEDDED_BOOT_MS: '300' },
      children,
    );
    await pollUntil('the first action done', () =>
      /"outcome":"done"/.test(apply.output()) ? true : undefined,
    );
    const failedOverAt = Date.now();
    assert.equal(await sentinel.sentinel(0).call('SENTINEL', 'FAILOVER', 'vfleet-test'), 'OK');
    const code = await apply.exited;
    const output = apply.output();
    const resumed =
      /Resumed (?:once|\d+ times) after Redis came back as another server: (\d+) actions? enqueued again/.exec(
        output,
      );
    t.diagnostic(
      `apply exit ${code}, ${Date.now() - failedOverAt} ms after SENTINEL FAILOVER; ${resumed ? `it saw the failover and resumed: ${resumed[1]} actions enqueued again` : 'it saw no loss'}`,
    );
    assert.equal(code, 0, output);
    assert.match(output, /Apply complete: 32 actions done\./);
    assert.doesNotMatch(output, /\n\s+at |Please report this/);
    assert.ok(!output.includes(PASSWORD));

    // The Sentinels agree on the new master, and the old one serves as its replica (its writes
    // the new master never had are gone).
    const newMaster = await pollUntil('a new master', async () => {
      const port = await sentinel.masterPort();
      return port !== oldMaster ? port : undefined;
    });
    const old = sentinel.server(sentinel.servers.findIndex((s) => s.port === oldMaster));
    await pollUntil('the old master a replica, in sync', async () => {
      const info = await old.info('replication');
      return /role:slave/.test(info) &&
        new RegExp(`master_port:${newMaster}`).test(info) &&
        /master_link_status:up/.test(info) &&
        /master_sync_in_progress:0/.test(info)
        ? true
        : undefined;
    });

    // What the failover really lost, read once it is over: the plan on the new master.
    const before = vfleet(['plan'], cwd, env);
    const missing = /Plan: (\d+) to create, (\d+) to move, (\d+) to update, (\d+) to patch/.exec(
      before.stdout,
    );
    const lostNow = missing ? missing.slice(1).reduce((n, x) => n + Number(x), 0) : -1;
    t.diagnostic(`the plan once the failover is over: ${lostNow} actions from the spec`);
    // Not asserted: an apply that ends between the replica's promotion and the Sentinels'
    // switch cannot see that it lost writes (docs/redis.md, "Failover"); the diagnostic says
    // what each run saw. What is asserted: the next apply converges the fleet.
    assert.ok(lostNow >= 0, before.stdout + before.stderr);

    const again = vfleet(['apply', '--auto-approve'], cwd, env);
    assert.equal(again.code, 0, again.stdout + again.stderr);
    const plan = vfleet(['plan'], cwd, env);
    assert.equal(plan.code, 0, plan.stderr);
    assert.match(plan.stdout, CONVERGED);
    const status = vfleet(['status'], cwd, env);
    assert.match(status.stdout, /No drift: the fleet matches the spec\./);
  });
});
