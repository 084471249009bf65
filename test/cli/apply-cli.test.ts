// The main job as a user runs it: `vfleet apply` on the embedded default, then against a test
// redis-server (REDIS_URL) for the failure cases: a second apply changes nothing, a stale saved
// plan is refused, a locked fleet is refused with the holder, a failed host fails cleanly, and
// an apply killed midway is resumed by the next with every instance existing exactly once.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { fromRoot } from '../helpers/paths.js';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';

const bin = fromRoot('bin', 'vfleet.js');

function workdir(): string {
  const dir = mkdtempSync(`${tmpdir()}/vfleet-apply-`);
  copyFileSync(fromRoot('fleet.yaml'), `${dir}/fleet.yaml`);
  // fleet.yaml takes the debian-12 image's packages from this inventory, relative to the spec
  cpSync(fromRoot('examples', 'inventories'), `${dir}/examples/inventories`, { recursive: true });
  return dir;
}

function vfleet(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}) {
  const result = spawnSync(process.execPath, [bin, ...args], {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, VFLEET_EMBEDDED_BOOT_MS: '0', ...env },
    timeout: 60_000,
    // status --json carries every instance's package inventory: over 1 MiB at a few hundred
    maxBuffer: 64 * 1024 * 1024,
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

const running = (cwd: string, env: NodeJS.ProcessEnv) => {
  const status = JSON.parse(vfleet(['status', '--json'], cwd, env).stdout);
  return status.instances as Array<{ instance: string; status: string; host: string }>;
};

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
  let server: TestRedisServer;
  let env: NodeJS.ProcessEnv;
  before(async () => {
    server = await startRedisServer({ args: ['--maxmemory-policy', 'noeviction'], tcp: true });
    env = { REDIS_URL: `${server.url}/0` };
  });
  after(async () => server.stop());

  const fresh = async () => {
    await server.client().flushall();
    return workdir();
  };

  it('refuses to apply without --auto-approve when no one can answer', async () => {
    const dir = await fresh();
    const run = vfleet(['apply'], dir, env);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /--auto-approve/);
    assert.equal(running(dir, env).length, 0);
  });

  it('plan --detailed-exitcode says 2 for changes; a stale saved plan is refused', async () => {
    const dir = await fresh();
    const plan = vfleet(['plan', '--out', 'plan.json', '--detailed-exitcode'], dir, env);
    assert.equal(plan.code, 2);
    const applied = vfleet(['apply', 'plan.json'], dir, env);
    assert.equal(applied.code, 0, applied.stderr);
    const again = vfleet(['apply', 'plan.json'], dir, env);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /stale: the fleet's state moved from version 0 to 32/);
  });

  it('refuses a locked fleet with the holder, and force-unlock frees it', async () => {
    const dir = await fresh();
    const holder = { id: 'deadbeef', pid: 4242, host: 'elsewhere', since: 0 };
    await server.client().set('vfleet:{lab}:lock', JSON.stringify(holder), 'PX', 60_000);
    const refused = vfleet(['apply', '--auto-approve'], dir, env);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /locked by apply deadbeef \(pid 4242 on elsewhere/);
    assert.match(refused.stderr, /vfleet force-unlock deadbeef/);
    assert.equal(vfleet(['force-unlock', 'deadbeef'], dir, env).code, 0);
    assert.equal(vfleet(['apply', '--auto-approve'], dir, env).code, 0);
  });

  it('a failed host makes its actions fail cleanly; after recovery the next apply finishes', async () => {
    const dir = await fresh();
    assert.equal(vfleet(['host', 'fail', 'ct-r1-03'], dir, env).code, 0);
    const failed = vfleet(['apply', '--auto-approve'], dir, env);
    assert.equal(failed.code, 1);
    assert.match(failed.stderr, /host ct-r1-03 does not answer/);
    assert.match(failed.stdout, /Apply incomplete: \d+ done, \d+ failed or skipped\./);
    assert.doesNotMatch(failed.stderr, /\n\s+at /, 'no stack trace');
    assert.equal(vfleet(['host', 'recover', 'ct-r1-03'], dir, env).code, 0);
    const resumed = vfleet(['apply', '--auto-approve'], dir, env);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.equal(running(dir, env).length, 26);
  });

  it('an apply where every action failed is retried whole by the next (not read back as failed)', async () => {
    const dir = await fresh();
    const all = ['r1', 'r2', 'r3'].flatMap((r) => [`hv-${r}-01`, `hv-${r}-02`, `ct-${r}-03`]);
    for (const h of all) assert.equal(vfleet(['host', 'fail', h], dir, env).code, 0);
    const failed = vfleet(['apply', '--auto-approve'], dir, env);
    assert.equal(failed.code, 1);
    assert.match(failed.stdout, /Apply incomplete: 0 done, \d+ failed or skipped\./);
    for (const h of all) assert.equal(vfleet(['host', 'recover', h], dir, env).code, 0);
    // The same spec and the same (untouched) state: the same plan, whose jobs all failed.
    const resumed = vfleet(['apply', '--auto-approve'], dir, env);
    assert.equal(resumed.code, 0, resumed.stdout + resumed.stderr);
    assert.equal(running(dir, env).length, 26);
  });

  it('a replica scaled away and back lands above the tombstones hosts keep', async () => {
    const dir = await fresh();
    assert.equal(vfleet(['apply', '--auto-approve'], dir, env).code, 0);
    const spec = readFileSync(`${dir}/fleet.yaml`, 'utf8');
    const scaled = spec.replace(/(- name: api\n\s+image: debian-12\n\s+replicas:) 4/, '$1 0');
    assert.notEqual(scaled, spec);
    writeFileSync(`${dir}/fleet.yaml`, scaled);
    assert.equal(vfleet(['apply', '--auto-approve'], dir, env).code, 0);
    assert.equal(running(dir, env).filter((i) => i.instance.startsWith('api-')).length, 0);
    // The destroyed replicas' tombstones stay on the hosts they left (generation 2); make every
    // host one of those, at a generation the state never saw (an earlier life, a lost state),
    // so wherever the scheduler puts them now, the create must go above a fence.
    const redis = server.client();
    const fences = await redis.keys('vfleet:{lab}:engine:*:fence');
    assert.equal(fences.length, 9);
    for (const key of fences) for (let i = 0; i < 4; i++) await redis.hset(key, `api-${i}`, 7);
    writeFileSync(`${dir}/fleet.yaml`, spec);
    const back = vfleet(['apply', '--auto-approve'], dir, env);
    assert.equal(back.code, 0, back.stdout + back.stderr);
    const status = JSON.parse(vfleet(['status', '--json'], dir, env).stdout);
    assert.equal(status.instances.length, 26);
    const api = status.instances.filter((r: { instance: string }) => r.instance.startsWith('api-'));
    assert.deepEqual(
      api.map((r: { generation: number }) => r.generation),
      [8, 8, 8, 8],
    );
  });

  it('a host leaves by drain then removal; removed with instances it is refused, or forgotten', async () => {
    const dir = await fresh();
    assert.equal(vfleet(['apply', '--auto-approve'], dir, env).code, 0);
    const spec = readFileSync(`${dir}/fleet.yaml`, 'utf8');
    const hostBlock = (text: string, name: string) => {
      const start = text.indexOf(`    - name: ${name}\n`);
      const end = text.indexOf('    - name:', start + 1);
      return { start, end };
    };
    const without = (text: string, name: string) => {
      const { start, end } = hostBlock(text, name);
      return text.slice(0, start) + text.slice(end);
    };
    const onHost = (name: string) =>
      running(dir, env)
        .filter((i) => i.host === name)
        .map((i) => i.instance);
    const victim = 'hv-r2-02';
    const displaced = onHost(victim);
    assert.ok(displaced.length > 0, `${victim} runs something`);
    const version = await server.client().get('vfleet:{lab}:version');

    // Removed while it runs instances: refused before anything runs, with both ways out.
    writeFileSync(`${dir}/fleet.yaml`, without(spec, victim));
    const refused = vfleet(['apply', '--auto-approve'], dir, env);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, new RegExp(`${victim}: ${displaced[0]}`));
    assert.match(refused.stderr, /drain: true/);
    assert.match(refused.stderr, new RegExp(`vfleet host forget ${victim}`));
    assert.doesNotMatch(refused.stderr, /\n\s+at /, 'no stack trace');
    assert.equal(await server.client().get('vfleet:{lab}:version'), version);

    // Drained: its instances move off (disks and patches with them), then it can go.
    const { start } = hostBlock(spec, victim);
    const lineEnd = spec.indexOf('\n', start) + 1;
    writeFileSync(
      `${dir}/fleet.yaml`,
      `${spec.slice(0, lineEnd)}      drain: true\n${spec.slice(lineEnd)}`,
    );
    const drained = vfleet(['apply', '--auto-approve'], dir, env);
    assert.equal(drained.code, 0, drained.stdout + drained.stderr);
    assert.deepEqual(onHost(victim), []);
    const settled = vfleet(['plan', '--detailed-exitcode'], dir, env);
    assert.equal(settled.code, 0, settled.stdout);
    writeFileSync(`${dir}/fleet.yaml`, without(spec, victim));
    assert.equal(vfleet(['plan', '--detailed-exitcode'], dir, env).code, 0);

    // Gone for good: forgotten, its instances are created elsewhere.
    const lost = 'hv-r3-02';
    const orphans = onHost(lost);
    assert.ok(orphans.length > 0, `${lost} runs something`);
    writeFileSync(`${dir}/fleet.yaml`, without(without(spec, victim), lost));
    assert.equal(vfleet(['host', 'forget', 'hv-r1-01'], dir, env).code, 1, 'a host in the spec');
    const forgot = vfleet(['host', 'forget', lost], dir, env);
    assert.equal(forgot.code, 0, forgot.stderr);
    assert.match(forgot.stdout, new RegExp(`Forgot ${orphans.length} instance`));
    const recreated = vfleet(['apply', '--auto-approve'], dir, env);
    assert.equal(recreated.code, 0, recreated.stdout + recreated.stderr);
    assert.match(recreated.stdout, new RegExp(`${orphans.length} to create`));
    const after = running(dir, env);
    assert.equal(after.length, 26);
    assert.ok(after.every((i) => i.host !== victim && i.host !== lost));
  });

  it('an instance gone from its host outside vfleet is shown missing and created again', async () => {
    const dir = await fresh();
    assert.equal(vfleet(['apply', '--auto-approve'], dir, env).code, 0);
    const victim = running(dir, env).find((i) => i.instance === 'batch-0');
    assert.ok(victim);
    // Deleted on the host itself (as a crashed VM's files removed, or a host rebuilt).
    assert.equal(
      await server.client().hdel(`vfleet:{lab}:engine:${victim.host}:instances`, 'batch-0'),
      1,
    );
    const status = vfleet(['status'], dir, env);
    assert.match(status.stdout, /batch-0 +\S+ +1 +missing/);
    assert.match(status.stdout, /Drift: 1 to create/);
    const plan = vfleet(['plan', '--detailed-exitcode'], dir, env);
    assert.equal(plan.code, 2);
    assert.match(
      plan.stdout,
      new RegExp(`\\+ create batch-0 on \\S+: missing from ${victim.host}, created again`),
    );
    const applied = vfleet(['apply', '--auto-approve'], dir, env);
    assert.equal(applied.code, 0, applied.stdout + applied.stderr);
    assert.equal(vfleet(['plan', '--detailed-exitcode'], dir, env).code, 0);
    let onHosts = 0;
    for (const key of await server.client().keys('vfleet:{lab}:engine:*:instances'))
      onHosts += (await server.client().hexists(key, 'batch-0')) ? 1 : 0;
    assert.equal(onHosts, 1, 'batch-0 exists again, once');
  });

  it('instances the fleet has no room for fail the apply, grouped in the plan, until they fit', async () => {
    const dir = await fresh();
    const spec = readFileSync(`${dir}/fleet.yaml`, 'utf8');
    const scaled = spec.replace(/(- name: batch\n\s+image: \S+\n\s+replicas:) 8/, '$1 300');
    assert.notEqual(scaled, spec);
    writeFileSync(`${dir}/fleet.yaml`, scaled);
    const first = vfleet(['apply', '--auto-approve'], dir, env);
    assert.equal(first.code, 1, first.stdout);
    const cannot =
      /Cannot place (\d+) instances:\n {2}! \1 of batch \(batch-\d+ … batch-299\): insufficient-cpu/.exec(
        first.stdout,
      );
    assert.ok(cannot, first.stdout);
    const unplaced = Number(cannot[1]);
    assert.match(
      first.stdout,
      new RegExp(`Apply incomplete: \\d+ actions done, but ${unplaced} instances cannot be placed`),
    );
    // What fits was applied; nothing more to do, still not the spec.
    assert.equal(running(dir, env).length, 26 - 8 + 300 - unplaced);
    const again = vfleet(['apply', '--auto-approve'], dir, env);
    assert.equal(again.code, 1);
    assert.match(
      again.stdout,
      new RegExp(`nothing to do, but ${unplaced} instances cannot be placed`),
    );
    assert.match(
      vfleet(['status'], dir, env).stdout,
      new RegExp(`${unplaced} instances of the spec cannot be placed`),
    );
    writeFileSync(`${dir}/fleet.yaml`, spec);
    assert.equal(vfleet(['apply', '--auto-approve'], dir, env).code, 0);
  });

  it('an apply killed midway (SIGKILL) is resumed by the next: every instance exactly once', async () => {
    const dir = await fresh();
    const child = spawn(process.execPath, [bin, 'apply', '--auto-approve', '--workers', '1'], {
      cwd: dir,
      env: { ...process.env, ...env, VFLEET_EMBEDDED_BOOT_MS: '150' },
      stdio: 'ignore',
    });
    const redis = server.client();
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
    const resumed = vfleet(['apply', '--auto-approve'], dir, env);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(
      resumed.stderr,
      new RegExp(`apply ${holder.id} \\(pid ${child.pid}\\) is gone; taking over its lock`),
    );
    const names = running(dir, env).map((i) => i.instance);
    assert.equal(names.length, 26);
    // Exactly once on the hosts themselves, not only in the state.
    let onHosts = 0;
    for (const key of await redis.keys('vfleet:{lab}:engine:*:instances'))
      onHosts += await redis.hlen(key);
    assert.equal(onHosts, 26);
  });
});
