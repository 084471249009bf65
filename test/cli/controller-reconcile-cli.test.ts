// `vfleet controller --auto-apply` reconciling the spec file: an instance removed behind vfleet's
// back is created again (self-heal); a spec edit rolls out without anyone running apply; a spec
// that does not validate is reported at file:line:col and leaves the fleet as it is; a newer,
// valid spec then rolls out at once. `vfleet events --follow` prints the story as it happens.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';
import { pollUntil, spawnVfleet, vfleet, workdir } from '../helpers/vfleet-cli.js';

describe('vfleet controller reconciling the spec file', () => {
  let server: TestRedisServer;
  let redis: Redis;
  let env: NodeJS.ProcessEnv;
  const children: ChildProcess[] = [];
  before(async () => {
    server = await startRedisServer({ args: ['--maxmemory-policy', 'noeviction'], tcp: true });
    redis = server.client();
    env = { REDIS_URL: `${server.url}/0` };
  });
  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await server.stop();
  });

  const start = (args: string[], cwd: string) =>
    spawnVfleet(args, cwd, { VFLEET_EMBEDDED_BOOT_MS: '0', ...env }, children);
  const until = pollUntil;

  const instances = (cwd: string) => {
    const result = vfleet(['status', '--json'], cwd, env);
    assert.equal(result.code, 0, result.stderr);
    return JSON.parse(result.stdout).instances as Array<{
      instance: string;
      host: string;
      status: string;
      generation: number;
    }>;
  };

  it('heals, rolls out an edit, refuses an invalid spec, and follows a newer one', async () => {
    const cwd = workdir();
    assert.equal(vfleet(['apply', 'fleet.yaml', '--auto-approve'], cwd, env).code, 0);
    const follower = start(['events', '--follow', '--json', '--last', '1'], cwd);
    const controller = start(
      [
        'controller',
        '-f',
        'fleet.yaml',
        '--lease-ttl',
        '1s',
        '--interval',
        '1s',
        '--auto-apply',
        // the edit below scales a group down: its removals run only with prune
        '--prune',
      ],
      cwd,
    );
    await until('the controller leads', async () =>
      (await redis.get('vfleet:{lab}:leader')) !== null ? true : undefined,
    );

    // Self-heal: cache-0 vanishes from its host behind vfleet's back.
    const before = instances(cwd).find((i) => i.instance === 'cache-0');
    assert.ok(before);
    await redis.hdel(`vfleet:{lab}:engine:${before.host}:instances`, 'cache-0');
    const healed = await until('cache-0 runs again', () => {
      const now = instances(cwd).find((i) => i.instance === 'cache-0');
      return now && now.status === 'running' && now.generation > before.generation
        ? now
        : undefined;
    });
    assert.ok(healed.generation > before.generation);

    // A spec edit rolls out: one more batch replica.
    const spec = readFileSync(`${cwd}/fleet.yaml`, 'utf8');
    const batch = /(- name: batch\n(?:.*\n)*?\s+replicas: )(\d+)/.exec(spec);
    assert.ok(batch, 'the root fleet has a batch group with replicas');
    const replicas = Number(batch[2]);
    const grown = spec.replace(batch[0], `${batch[1]}${replicas + 1}`);
    writeFileSync(`${cwd}/fleet.yaml`, grown);
    await until('the new batch replica runs', () =>
      instances(cwd).some((i) => i.instance === `batch-${replicas}` && i.status === 'running')
        ? true
        : undefined,
    );

    // An invalid spec: reported with its location, the fleet left as it is (read from the
    // state: status itself refuses the invalid spec).
    const recorded = () => redis.hkeys('vfleet:{lab}:instances');
    const count = (await recorded()).length;
    writeFileSync(`${cwd}/fleet.yaml`, grown.replace(/replicas: (\d+)/, 'replicas: many'));
    await until('the invalid spec is reported', () =>
      /spec-invalid .*fleet\.yaml:\d+:\d+: /.test(controller.output()) ? true : undefined,
    );
    assert.equal((await recorded()).length, count);
    // A newer valid spec supersedes it at once: back to the original size.
    writeFileSync(`${cwd}/fleet.yaml`, spec);
    await until(`batch-${replicas} is removed`, () =>
      instances(cwd).some((i) => i.instance === `batch-${replicas}`) ? undefined : true,
    );

    // The follower saw the story as it happened.
    await until('events --follow printed the roll-outs', () =>
      /"type":"spec-changed"/.test(follower.output()) &&
      /"type":"spec-invalid"/.test(follower.output())
        ? true
        : undefined,
    );
    for (const line of follower.output().trim().split('\n')) JSON.parse(line);

    controller.child.kill('SIGTERM');
    assert.equal(await controller.exited, 0, controller.output());
    follower.child.kill('SIGINT');
    assert.equal(await follower.exited, 0, follower.output());
  });
});

describe('vfleet controller when its Redis goes away', () => {
  const children: ChildProcess[] = [];
  after(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  });

  it('says so once, and stops on SIGTERM within a bound instead of waiting for Redis', async () => {
    const server = await startRedisServer({
      args: ['--maxmemory-policy', 'noeviction'],
      tcp: true,
    });
    const cwd = workdir();
    const env = { REDIS_URL: `${server.url}/0`, VFLEET_EMBEDDED_BOOT_MS: '0' };
    try {
      assert.equal(vfleet(['apply', 'fleet.yaml', '--auto-approve'], cwd, env).code, 0);
      const controller = spawnVfleet(
        ['controller', '-f', 'fleet.yaml', '--lease-ttl', '1s'],
        cwd,
        env,
        children,
      );
      await pollUntil('the controller leads', () =>
        / leader\b/.test(controller.output()) ? true : undefined,
      );
      await server.stop();
      await pollUntil('the controller says Redis does not answer', () =>
        /controller-error — Redis .* does not answer/.test(controller.output()) ? true : undefined,
      );
      controller.child.kill('SIGTERM');
      assert.equal(await controller.exited, 0, controller.output());
      // Once, not every tick; and no stack trace.
      assert.equal(controller.output().match(/does not answer; retrying/g)?.length, 1);
      assert.doesNotMatch(controller.output(), /\n\s+at /);
    } finally {
      await server.stop().catch(() => undefined);
    }
  });
});
