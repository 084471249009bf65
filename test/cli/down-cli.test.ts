// `vfleet down` as a user runs it: stops the folder's private redis-server, says so, exits 0;
// with nothing running, or with REDIS_URL, there is nothing to stop.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { connectRedis } from '../../src/state/connect-redis.js';
import { isProcessAlive } from '../../src/state/process-alive.js';
import { stopEmbeddedRedis } from '../../src/state/redis-server.js';
import { fromRoot } from '../helpers/paths.js';

const bin = fromRoot('bin', 'vfleet.js');
const env = { ...process.env, REDIS_URL: undefined };
const dirs: string[] = [];

function aFolder(): string {
  const dir = mkdtempSync(`${tmpdir()}/vfleet-down-`);
  dirs.push(dir);
  return dir;
}

function vfleet(args: string[], cwd: string, extraEnv: NodeJS.ProcessEnv = {}) {
  const result = spawnSync(process.execPath, [bin, ...args], {
    cwd,
    env: { ...env, ...extraEnv },
    encoding: 'utf8',
    timeout: 20_000,
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

after(async () => {
  for (const dir of dirs) {
    await stopEmbeddedRedis(dir).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
});

describe('vfleet down', () => {
  it('says there is nothing to stop in a folder with no server, exit 0', () => {
    const cwd = aFolder();
    const run = vfleet(['down'], cwd);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^Nothing to stop: no private redis-server is running/);
    assert.equal(run.stderr, '');
    assert.equal(existsSync(`${cwd}/.vfleet`), false);
  });

  it('refuses while an apply holds a fleet lock on the server; stops once it is done', async () => {
    const cwd = aFolder();
    copyFileSync(fromRoot('fleet.yaml'), `${cwd}/fleet.yaml`);
    cpSync(fromRoot('examples', 'inventories'), `${cwd}/examples/inventories`, {
      recursive: true,
    });
    const apply = spawn(process.execPath, [bin, 'apply', '--auto-approve', '--workers', '1'], {
      cwd,
      env: { ...env, VFLEET_EMBEDDED_BOOT_MS: '200' },
      stdio: 'ignore',
    });
    const exited = new Promise<number | null>((resolve) => apply.once('exit', resolve));
    const connection = await connectRedis({ cwd, env });
    try {
      const deadline = Date.now() + 30_000;
      while ((await connection.redis.exists('vfleet:{lab}:lock')) === 0) {
        assert.ok(Date.now() < deadline, 'the apply took the fleet lock');
        await delay(25);
      }
      const refused = vfleet(['down'], cwd);
      assert.equal(refused.code, 1, refused.stdout);
      assert.match(
        refused.stderr,
        new RegExp(
          `not stopping the private redis-server: apply \\w+ \\(pid ${apply.pid} on .*\\) holds fleet lab's lock.*vfleet down --force`,
        ),
      );
      assert.doesNotMatch(refused.stderr, /\n\s+at /);
      assert.equal(await connection.redis.ping(), 'PONG');
    } finally {
      await connection.close();
    }
    assert.equal(await exited, 0);
    const run = vfleet(['down'], cwd);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^Stopped the private redis-server/);
  });

  it("stops the folder's server, then has nothing left to stop", async () => {
    const cwd = aFolder();
    const connection = await connectRedis({ cwd, env });
    const pid = Number(/process_id:(\d+)/.exec(await connection.redis.info('server'))?.[1]);
    await connection.close();
    const run = vfleet(['down'], cwd);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, new RegExp(`^Stopped the private redis-server \\(pid ${pid}\\)`));
    assert.equal(isProcessAlive(pid), false);
    const again = vfleet(['down'], cwd);
    assert.equal(again.code, 0);
    assert.match(again.stdout, /^Nothing to stop/);
  });

  it('with REDIS_URL, stops nothing: vfleet did not start that server', () => {
    const cwd = aFolder();
    const run = vfleet(['down'], cwd, { REDIS_URL: 'redis://:hunter2-secret@redis.example:6379' });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^Nothing to stop: REDIS_URL is set.*did not start it/);
    assert.doesNotMatch(run.stdout + run.stderr, /hunter2/);
  });

  it('is listed in --help', () => {
    const run = vfleet(['--help'], aFolder());
    assert.match(run.stdout, /down (\[options\] +)?stop this folder's private redis-server/);
  });
});
