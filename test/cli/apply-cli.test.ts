// The main job as a user runs it: `vfleet apply` on the embedded default, then against a test
// redis-server (REDIS_URL) for the failure cases: a second apply changes nothing, a stale saved
// plan is refused, a locked fleet is refused with the holder, a failed host fails cleanly, and
// an apply killed midway is resumed by the next with every instance existing exactly once.
// Changes to the fleet between applies are in apply-changes-cli.test.ts.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { bin, running, useApplyRedis, vfleet, workdir } from '../helpers/vfleet-cli.js';

describe('vfleet apply on the embedded default', () => {
  it('converges from nothing, then changes nothing; down stops the private Redis', () => {
    const dir = workdir();
    try {
      const first = vfleet(['apply', '--auto-approve'], dir);
      assert.equal(first.code, 0, first.stderr);
      assert.match(
        first.stdout,
        /Plan: 26 to create, 0 to move, 0 to update, 6 to patch, 0 to destroy\./,
      );
      assert.match(first.stdout, /Apply complete: 32 actions done\./);
      const second = vfleet(['apply', '--auto-approve'], dir);
      assert.equal(second.code, 0);
      assert.match(second.stdout, /^No changes\./);
      assert.match(
        second.stdout,
        /Plan: 0 to create, 0 to move, 0 to update, 0 to patch, 0 to destroy\./,
      );
      const plan = vfleet(['plan', '--detailed-exitcode'], dir);
      assert.equal(plan.code, 0);
      const instances = running(dir, {});
      assert.equal(instances.length, 26);
      assert.ok(instances.every((i) => i.status === 'running'));
    } finally {
      assert.equal(vfleet(['down'], dir).code, 0);
    }
  });
});

describe('vfleet apply against REDIS_URL', () => {
  const f = useApplyRedis();

  it('refuses to apply without --auto-approve when no one can answer', async () => {
    const dir = await f.fresh();
    const run = vfleet(['apply'], dir, f.env);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /--auto-approve/);
    assert.equal(running(dir, f.env).length, 0);
  });

  it('plan --detailed-exitcode says 2 for changes; a stale saved plan is refused', async () => {
    const dir = await f.fresh();
    const plan = vfleet(['plan', '--out', 'plan.json', '--detailed-exitcode'], dir, f.env);
    assert.equal(plan.code, 2);
    const applied = vfleet(['apply', 'plan.json'], dir, f.env);
    assert.equal(applied.code, 0, applied.stderr);
    const again = vfleet(['apply', 'plan.json'], dir, f.env);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /stale: the fleet's state moved from version 0 to 32/);
  });

  it('a saved plan is stale once a packagesFrom inventory changes, and carries its images', async () => {
    const dir = await f.fresh();
    const saved = vfleet(['plan', '--out', 'plan.json'], dir, f.env);
    assert.equal(saved.code, 0, saved.stderr);
    const plan = JSON.parse(readFileSync(`${dir}/plan.json`, 'utf8'));
    const creates = plan.actions.filter((a: { kind: string }) => a.kind === 'create');
    assert.ok(creates.length > 0);
    for (const a of creates) assert.equal(plan.images[a.image]?.name, a.image);
    // The image's packages come from the inventory: the plan carries them as read.
    assert.equal(plan.images['debian-12']?.packages.adduser, '3.134');
    const inventory = `${dir}/examples/inventories/debian-12.tsv`;
    writeFileSync(
      inventory,
      readFileSync(inventory, 'utf8').replace('adduser\t3.134', 'adduser\t3.135'),
    );
    const stale = vfleet(['apply', 'plan.json'], dir, f.env);
    assert.equal(stale.code, 1);
    assert.match(
      stale.stderr,
      /the saved plan is stale: fleet\.yaml \(or a file it names, such as a packagesFrom inventory\) changed/,
    );
    assert.equal(running(dir, f.env).length, 0);
    // A plan that does not carry the images its actions create from is not a plan apply runs.
    delete plan.images;
    writeFileSync(`${dir}/old.json`, JSON.stringify(plan));
    const old = vfleet(['apply', 'old.json'], dir, f.env);
    assert.equal(old.code, 1);
    assert.match(old.stderr, /old\.json is not a vfleet plan: images must be an object/);
  });

  it('apply --json prints only JSON lines: the plan, one per action, the result', async () => {
    const dir = await f.fresh();
    const refused = vfleet(['apply', '--json'], dir, f.env);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /--json needs --auto-approve/);
    const run = vfleet(['apply', '--auto-approve', '--json'], dir, f.env);
    assert.equal(run.code, 0, run.stderr);
    const lines = run.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.ok(lines.every((l) => l.formatVersion === '1'));
    const [first, ...rest] = lines;
    const last = rest.pop();
    assert.equal(first.type, 'plan');
    assert.ok(rest.every((l) => l.type === 'action' && l.plan === first.plan.id));
    assert.equal(rest.length, first.plan.actions.length);
    assert.deepEqual(
      {
        type: last.type,
        status: last.status,
        done: last.done,
        failed: last.failed,
        exitCode: last.exitCode,
      },
      { type: 'result', status: 'applied', done: rest.length, failed: 0, exitCode: 0 },
    );
    // What is said for people went to standard error.
    assert.match(run.stderr, /Apply complete: \d+ actions done\./);
    const host = first.plan.actions[0].host;
    const failed = vfleet(['host', 'fail', host, '--json'], dir, f.env);
    assert.deepEqual(JSON.parse(failed.stdout), { formatVersion: '1', host, fault: 'fail' });
    assert.equal(vfleet(['host', 'recover', host], dir, f.env).code, 0);
  });

  it('refuses a locked fleet with the holder, and force-unlock frees it', async () => {
    const dir = await f.fresh();
    const holder = { id: 'deadbeef', pid: 4242, host: 'elsewhere', since: 0 };
    await f.server.client().set('vfleet:{lab}:lock', JSON.stringify(holder), 'PX', 60_000);
    const refused = vfleet(['apply', '--auto-approve'], dir, f.env);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /locked by apply deadbeef \(pid 4242 on elsewhere/);
    assert.match(refused.stderr, /vfleet force-unlock deadbeef/);
    assert.equal(vfleet(['force-unlock', 'deadbeef'], dir, f.env).code, 0);
    assert.equal(vfleet(['apply', '--auto-approve'], dir, f.env).code, 0);
  });

  it('a failed host makes its actions fail cleanly; after recovery the next apply finishes', async () => {
    const dir = await f.fresh();
    // A host the apply places something on (which one is the scheduler's choice).
    const placement = JSON.parse(vfleet(['schedule', '--json'], dir, f.env).stdout);
    const host: string = placement.placements[0].host;
    assert.equal(vfleet(['host', 'fail', host], dir, f.env).code, 0);
    const failed = vfleet(['apply', '--auto-approve'], dir, f.env);
    assert.equal(failed.code, 1);
    assert.match(failed.stderr, new RegExp(`host ${host} does not answer`));
    assert.match(failed.stdout, /Apply incomplete: \d+ done, \d+ failed or skipped\./);
    assert.doesNotMatch(failed.stderr, /\n\s+at /, 'no stack trace');
    assert.equal(vfleet(['host', 'recover', host], dir, f.env).code, 0);
    const resumed = vfleet(['apply', '--auto-approve'], dir, f.env);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.equal(running(dir, f.env).length, 26);
  });

  it('a partitioned host cannot be reached but keeps its instances; status tells it from a failed one', async () => {
    const dir = await f.fresh();
    const redis = f.server.client();
    const down = 'vfleet:{lab}:engine:ct-r1-03:down';
    const partition = vfleet(['host', 'partition', 'ct-r1-03'], dir, f.env);
    assert.equal(partition.code, 0, partition.stderr);
    assert.match(partition.stdout, /Host ct-r1-03 is cut off from the control plane/);
    assert.equal(await redis.get(down), 'partitioned');
    // vfleet's calls to it fail as unreachable, and the rest of the apply goes on.
    const cut = vfleet(['apply', '--auto-approve'], dir, f.env);
    assert.equal(cut.code, 1);
    assert.match(cut.stderr, /host ct-r1-03 does not answer/);
    assert.equal(vfleet(['host', 'recover', 'ct-r1-03'], dir, f.env).code, 0);
    assert.equal(await redis.exists(down), 0);
    assert.equal(vfleet(['apply', '--auto-approve'], dir, f.env).code, 0);
    // Partitioned with instances: they keep running there, untouched.
    const held = 'vfleet:{lab}:engine:ct-r1-03:instances';
    const before = await redis.hgetall(held);
    assert.ok(Object.keys(before).length > 0, 'ct-r1-03 runs instances');
    assert.equal(vfleet(['host', 'partition', 'ct-r1-03'], dir, f.env).code, 0);
    assert.equal(vfleet(['host', 'fail', 'hv-r1-01'], dir, f.env).code, 0);
    const hosts = () =>
      JSON.parse(vfleet(['status', '--json'], dir, f.env).stdout).hosts as Array<{
        name: string;
        health: string;
        fault: string | null;
        running: string[] | null;
      }>;
    const health = () => new Map(hosts().map((h) => [h.name, h.health]));
    const during = new Map(hosts().map((h) => [h.name, h]));
    // No controller judges: neither answers, so both are suspect; the fault says which is which.
    assert.equal(during.get('ct-r1-03')?.health, 'suspect');
    assert.equal(during.get('ct-r1-03')?.fault, 'partitioned');
    assert.equal(during.get('hv-r1-01')?.fault, 'failed');
    assert.equal(during.get('hv-r2-01')?.health, 'ok');
    assert.equal(during.get('hv-r2-01')?.fault, null);
    assert.equal(during.get('ct-r1-03')?.running, null, 'what it runs cannot be read');
    assert.match(
      vfleet(['status'], dir, f.env).stdout,
      /ct-r1-03 +embedded +suspect \(partitioned\)/,
    );
    for (const h of ['ct-r1-03', 'hv-r1-01'])
      assert.equal(vfleet(['host', 'recover', h], dir, f.env).code, 0);
    assert.deepEqual([...new Set(health().values())], ['ok']);
    assert.deepEqual(await redis.hgetall(held), before);
    // The partitioned host's instances ran on, untouched; the crashed one's died with it and are
    // not resumed by themselves: the plan starts them, and nothing else.
    const plan = JSON.parse(vfleet(['plan', '--json'], dir, f.env).stdout) as {
      actions: Array<{ kind: string; host: string }>;
    };
    assert.ok(plan.actions.length > 0);
    assert.deepEqual(
      [...new Set(plan.actions.map((a) => `${a.kind} on ${a.host}`))],
      ['start on hv-r1-01'],
    );
  });

  it('an apply where every action failed is retried whole by the next (not read back as failed)', async () => {
    const dir = await f.fresh();
    const all = ['r1', 'r2', 'r3'].flatMap((r) => [`hv-${r}-01`, `hv-${r}-02`, `ct-${r}-03`]);
    for (const h of all) assert.equal(vfleet(['host', 'fail', h], dir, f.env).code, 0);
    const failed = vfleet(['apply', '--auto-approve'], dir, f.env);
    assert.equal(failed.code, 1);
    assert.match(failed.stdout, /Apply incomplete: 0 done, \d+ failed or skipped\./);
    for (const h of all) assert.equal(vfleet(['host', 'recover', h], dir, f.env).code, 0);
    // The same spec and the same (untouched) state: the same plan, whose jobs all failed.
    const resumed = vfleet(['apply', '--auto-approve'], dir, f.env);
    assert.equal(resumed.code, 0, resumed.stdout + resumed.stderr);
    assert.equal(running(dir, f.env).length, 26);
  });

  it('an apply killed midway (SIGKILL) is resumed by the next: every instance exactly once', async () => {
    const dir = await f.fresh();
    const child = spawn(process.execPath, [bin, 'apply', '--auto-approve', '--workers', '1'], {
      cwd: dir,
      env: { ...process.env, ...f.env, VFLEET_EMBEDDED_BOOT_MS: '150' },
      stdio: 'ignore',
    });
    const redis = f.server.client();
    // A bound for a loaded machine (the apply's start alone may take seconds), not a timing test.
    const deadline = Date.now() + 60_000;
    while ((await redis.hlen('vfleet:{lab}:instances')) < 3 && Date.now() < deadline)
      await delay(25);
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    const partial = await redis.hlen('vfleet:{lab}:instances');
    assert.ok(partial > 0 && partial < 26, `killed midway (${partial} recorded)`);
    // The killed apply's lock is still there; its holder ran here and is gone, so the next
    // apply takes it over by itself (no force-unlock needed) and says so.
    const holder = JSON.parse((await redis.get('vfleet:{lab}:lock')) as string);
    assert.equal(holder.pid, child.pid);
    const resumed = vfleet(['apply', '--auto-approve'], dir, f.env);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(
      resumed.stderr,
      new RegExp(`apply ${holder.id} \\(pid ${child.pid}\\) is gone; taking over its lock`),
    );
    const names = running(dir, f.env).map((i) => i.instance);
    assert.equal(names.length, 26);
    // Exactly once on the hosts themselves, not only in the state.
    let onHosts = 0;
    for (const key of await redis.keys('vfleet:{lab}:engine:*:instances'))
      onHosts += await redis.hlen(key);
    assert.equal(onHosts, 26);
  });
});
