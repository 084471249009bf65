// `vfleet apply` against a test redis-server (REDIS_URL) as the fleet changes between applies:
// a replica scaled away and back, a host drained then removed or forgotten, an instance gone
// outside vfleet, instances the fleet has no room for. Split from apply-cli.test.ts, whose
// failure cases run beside these.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { FleetState } from '../../src/state/fleet-state.js';
import { running, useApplyRedis, vfleet } from '../helpers/vfleet-cli.js';

describe('vfleet apply against REDIS_URL: the fleet changes between applies', () => {
  const f = useApplyRedis();

  it('a replica scaled away and back lands above the tombstones hosts keep', async () => {
    const dir = await f.fresh();
    assert.equal(vfleet(['apply', '--auto-approve'], dir, f.env).code, 0);
    const spec = readFileSync(`${dir}/fleet.yaml`, 'utf8');
    const scaled = spec.replace(/(- name: api\n\s+image: debian-12\n\s+replicas:) 4/, '$1 0');
    assert.notEqual(scaled, spec);
    writeFileSync(`${dir}/fleet.yaml`, scaled);
    assert.equal(vfleet(['apply', '--auto-approve'], dir, f.env).code, 0);
    assert.equal(running(dir, f.env).filter((i) => i.instance.startsWith('api-')).length, 0);
    // The destroyed replicas' tombstones stay on the hosts they left (generation 2); make every
    // host one of those, at a generation the state never saw (an earlier life, a lost state),
    // so wherever the scheduler puts them now, the create must go above a fence.
    const redis = f.server.client();
    const fences = await redis.keys('vfleet:{lab}:engine:*:fence');
    assert.equal(fences.length, 9);
    for (const key of fences) for (let i = 0; i < 4; i++) await redis.hset(key, `api-${i}`, 7);
    writeFileSync(`${dir}/fleet.yaml`, spec);
    const back = vfleet(['apply', '--auto-approve'], dir, f.env);
    assert.equal(back.code, 0, back.stdout + back.stderr);
    const status = JSON.parse(vfleet(['status', '--json'], dir, f.env).stdout);
    assert.equal(status.instances.length, 26);
    const api = status.instances.filter((r: { instance: string }) => r.instance.startsWith('api-'));
    assert.deepEqual(
      api.map((r: { generation: number }) => r.generation),
      [8, 8, 8, 8],
    );
  });

  it('a host leaves by drain then removal; removed with instances it is refused, or forgotten', async () => {
    const dir = await f.fresh();
    assert.equal(vfleet(['apply', '--auto-approve'], dir, f.env).code, 0);
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
      running(dir, f.env)
        .filter((i) => i.host === name)
        .map((i) => i.instance);
    // A host that runs something, of rack r2 and not licensed (which one runs something is the
    // scheduler's choice); later another, of r3.
    const busy = (hosts: string[]) => hosts.find((h) => onHost(h).length > 0) as string;
    const victim = busy(['hv-r2-02', 'ct-r2-03']);
    const displaced = onHost(victim);
    assert.ok(displaced.length > 0, `${victim} runs something`);
    const version = await f.server.client().get('vfleet:{lab}:version');

    // Removed while it runs instances: refused before anything runs, with both ways out.
    writeFileSync(`${dir}/fleet.yaml`, without(spec, victim));
    const refused = vfleet(['apply', '--auto-approve'], dir, f.env);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, new RegExp(`${victim}: ${displaced[0]}`));
    assert.match(refused.stderr, /drain: true/);
    assert.match(refused.stderr, new RegExp(`vfleet host forget ${victim}`));
    assert.doesNotMatch(refused.stderr, /\n\s+at /, 'no stack trace');
    assert.equal(await f.server.client().get('vfleet:{lab}:version'), version);

    // Drained: its instances move off (disks and patches with them), then it can go.
    const { start } = hostBlock(spec, victim);
    const lineEnd = spec.indexOf('\n', start) + 1;
    writeFileSync(
      `${dir}/fleet.yaml`,
      `${spec.slice(0, lineEnd)}      drain: true\n${spec.slice(lineEnd)}`,
    );
    const drained = vfleet(['apply', '--auto-approve'], dir, f.env);
    assert.equal(drained.code, 0, drained.stdout + drained.stderr);
    assert.deepEqual(onHost(victim), []);
    const settled = vfleet(['plan', '--detailed-exitcode'], dir, f.env);
    assert.equal(settled.code, 0, settled.stdout);
    writeFileSync(`${dir}/fleet.yaml`, without(spec, victim));
    assert.equal(vfleet(['plan', '--detailed-exitcode'], dir, f.env).code, 0);

    // Gone for good: forgotten, its instances are created elsewhere.
    const lost = busy(['hv-r3-02', 'hv-r3-01', 'ct-r3-03']);
    const orphans = onHost(lost);
    assert.ok(orphans.length > 0, `${lost} runs something`);
    writeFileSync(`${dir}/fleet.yaml`, without(without(spec, victim), lost));
    assert.equal(vfleet(['host', 'forget', 'hv-r1-01'], dir, f.env).code, 1, 'a host in the spec');
    const forgot = vfleet(['host', 'forget', lost], dir, f.env);
    assert.equal(forgot.code, 0, forgot.stderr);
    assert.match(forgot.stdout, new RegExp(`Forgot ${orphans.length} instance`));
    const recreated = vfleet(['apply', '--auto-approve'], dir, f.env);
    assert.equal(recreated.code, 0, recreated.stdout + recreated.stderr);
    assert.match(recreated.stdout, new RegExp(`${orphans.length} to create`));
    const after = running(dir, f.env);
    assert.equal(after.length, 26);
    assert.ok(after.every((i) => i.host !== victim && i.host !== lost));
  });

  it('an instance gone from its host outside vfleet is shown missing and created again', async () => {
    const dir = await f.fresh();
    assert.equal(vfleet(['apply', '--auto-approve'], dir, f.env).code, 0);
    const victim = running(dir, f.env).find((i) => i.instance === 'batch-0');
    assert.ok(victim);
    // Deleted on the host itself (as a crashed VM's files removed, or a host rebuilt).
    assert.equal(
      await f.server.client().hdel(`vfleet:{lab}:engine:${victim.host}:instances`, 'batch-0'),
      1,
    );
    const status = vfleet(['status'], dir, f.env);
    assert.match(status.stdout, /batch-0 +\S+ +1 +missing/);
    assert.match(status.stdout, /Drift: 1 to create/);
    const plan = vfleet(['plan', '--detailed-exitcode'], dir, f.env);
    assert.equal(plan.code, 2);
    assert.match(
      plan.stdout,
      new RegExp(`\\+ create batch-0 on \\S+: missing from ${victim.host}, created again`),
    );
    const applied = vfleet(['apply', '--auto-approve'], dir, f.env);
    assert.equal(applied.code, 0, applied.stdout + applied.stderr);
    assert.equal(vfleet(['plan', '--detailed-exitcode'], dir, f.env).code, 0);
    let onHosts = 0;
    for (const key of await f.server.client().keys('vfleet:{lab}:engine:*:instances'))
      onHosts += (await f.server.client().hexists(key, 'batch-0')) ? 1 : 0;
    assert.equal(onHosts, 1, 'batch-0 exists again, once');
  });

  it('a second copy of an instance on another host is found and removed; the state keeps its own', async () => {
    const dir = await f.fresh();
    assert.equal(vfleet(['apply', '--auto-approve'], dir, f.env).code, 0);
    const redis = f.server.client();
    // The state's record as vfleet reads it (stored compactly: state/instance-records.ts).
    const record = await new FleetState(redis, 'lab').instance('web-0');
    assert.ok(record, 'the state has web-0');
    const own = `vfleet:{lab}:engine:${record.host}:instances`;
    const other = (await redis.keys('vfleet:{lab}:engine:*:instances')).find((k) => k !== own);
    assert.ok(other, 'another host');
    const otherHost = other.split(':')[3] as string;
    // What a superseded job's late create, or a write lost with Redis, leaves: web-0 twice.
    await redis.hset(other, 'web-0', (await redis.hget(own, 'web-0')) as string);
    const plan = vfleet(['plan'], dir, f.env);
    assert.match(
      plan.stdout,
      new RegExp(
        `- destroy web-0 on ${otherHost}: a second copy \\(the state has it on ${record.host}\\)`,
      ),
    );
    assert.match(
      plan.stdout,
      /Plan: 0 to create, 0 to move, 0 to update, 0 to patch, 1 to destroy\./,
    );
    const applied = vfleet(['apply', '--auto-approve'], dir, f.env);
    assert.equal(applied.code, 0, applied.stderr);
    assert.equal(await redis.hexists(other, 'web-0'), 0);
    assert.equal(await redis.hexists(own, 'web-0'), 1);
    assert.equal((await new FleetState(redis, 'lab').instance('web-0'))?.host, record.host);
    assert.match(vfleet(['plan'], dir, f.env).stdout, /^No changes\./);
  });

  it('instances the fleet has no room for fail the apply, grouped in the plan, until they fit', async () => {
    const dir = await f.fresh();
    const spec = readFileSync(`${dir}/fleet.yaml`, 'utf8');
    const scaled = spec.replace(/(- name: batch\n\s+image: \S+\n\s+replicas:) 8/, '$1 300');
    assert.notEqual(scaled, spec);
    writeFileSync(`${dir}/fleet.yaml`, scaled);
    const first = vfleet(['apply', '--auto-approve'], dir, f.env);
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
    assert.equal(running(dir, f.env).length, 26 - 8 + 300 - unplaced);
    const again = vfleet(['apply', '--auto-approve'], dir, f.env);
    assert.equal(again.code, 1);
    assert.match(
      again.stdout,
      new RegExp(`nothing to do, but ${unplaced} instances cannot be placed`),
    );
    assert.match(
      vfleet(['status'], dir, f.env).stdout,
      new RegExp(`${unplaced} instances of the spec cannot be placed`),
    );
    writeFileSync(`${dir}/fleet.yaml`, spec);
    assert.equal(vfleet(['apply', '--auto-approve'], dir, f.env).code, 0);
  });
});
