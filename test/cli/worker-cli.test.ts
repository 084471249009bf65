// Standalone workers: `vfleet apply --external-workers` with `vfleet worker` processes serving the
// queues; a worker SIGKILLed in the middle, then a new worker: every instance exists exactly
// once and the fleet converges; SIGTERM stops a worker gracefully.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { copyFileSync, cpSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { fromRoot } from '../helpers/paths.js';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';

const bin = fromRoot('bin', 'vfleet.js');

describe('vfleet worker', () => {
  let server: TestRedisServer;
  let env: NodeJS.ProcessEnv;
  const children: ChildProcess[] = [];
  before(async () => {
    server = await startRedisServer({ args: ['--maxmemory-policy', 'noeviction'], tcp: true });
    env = {
      ...process.env,
      REDIS_URL: `${server.url}/0`,
      VFLEET_EMBEDDED_BOOT_MS: '100',
      VFLEET_WORKER_LOCK_MS: '1000',
      VFLEET_HEARTBEAT_MS: '100',
    };
  });
  after(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await server.stop();
  });

  const start = (args: string[], cwd: string) => {
    const child = spawn(process.execPath, [bin, ...args], {
      cwd,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout?.on('data', (d) => {
      output += d;
    });
    child.stderr?.on('data', (d) => {
      output += d;
    });
    children.push(child);
    const exited = new Promise<number | null>((resolve) =>
      child.once('exit', (code) => resolve(code)),
    );
    return { child, exited, output: () => output };
  };
  const serving = async (w: ReturnType<typeof start>) => {
    for (let i = 0; i < 200 && !/serving/.test(w.output()); i++) await delay(25);
    assert.match(w.output(), /serving 9 host queues of fleet lab/);
  };

  it('a killed worker is replaced and the apply converges, every instance once', async () => {
    const dir = mkdtempSync(`${tmpdir()}/vfleet-worker-`);
    copyFileSync(fromRoot('fleet.yaml'), `${dir}/fleet.yaml`);
    // fleet.yaml takes the debian-12 image's packages from this inventory, relative to the spec
    cpSync(fromRoot('examples', 'inventories'), `${dir}/examples/inventories`, { recursive: true });
    const first = start(['worker', '--concurrency', '1'], dir);
    await serving(first);
    const apply = start(['apply', '--auto-approve', '--external-workers'], dir);
    const redis = server.client();
    for (let i = 0; i < 400 && (await redis.hlen('vfleet:{lab}:instances')) < 3; i++)
      await delay(25);
    first.child.kill('SIGKILL');
    await first.exited;
    const recorded = await redis.hlen('vfleet:{lab}:instances');
    assert.ok(recorded < 26, `the worker died midway (${recorded} recorded)`);
    const second = start(['worker', '--concurrency', '2'], dir);
    await serving(second);
    assert.equal(await apply.exited, 0, apply.output());
    assert.match(apply.output(), /Apply complete: 32 actions done\./);
    let onHosts = 0;
    for (const key of await redis.keys('vfleet:{lab}:engine:*:instances'))
      onHosts += await redis.hlen(key);
    assert.equal(onHosts, 26);
    assert.equal(await redis.hlen('vfleet:{lab}:instances'), 26);
    // Heartbeats: every host beats while it answers; a failed host stops beating.
    const beatsOf = async () => redis.hgetall('vfleet:{lab}:heartbeats');
    assert.equal(Object.keys(await beatsOf()).length, 9);
    await redis.set('vfleet:{lab}:engine:ct-r1-03:down', '1');
    await delay(300);
    const before = await beatsOf();
    await delay(500);
    const later = await beatsOf();
    assert.equal(later['ct-r1-03'], before['ct-r1-03'], 'the failed host stopped beating');
    assert.notEqual(later['hv-r1-01'], before['hv-r1-01'], 'the others go on');
    second.child.kill('SIGTERM');
    assert.equal(await second.exited, 0);
    assert.match(second.output(), /stopping; finishing the jobs in hand/);
  });
});
