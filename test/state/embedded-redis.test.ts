// The private redis-server a folder gets without REDIS_URL: started once, reused, stopped by
// `vfleet down`, durable (AOF), and started only once when vfleet processes race. Real
// redis-server processes; every one a test starts is stopped in after(), also on failure.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { after, describe, it } from 'node:test';
import { isVfleetError } from '../../src/model/errors.js';
import { connectRedis, type RedisConnection } from '../../src/state/connect-redis.js';
import { isProcessAlive } from '../../src/state/process-alive.js';
import { embeddedRedisPaths, stopEmbeddedRedis } from '../../src/state/redis-server.js';
import { fromRoot } from '../helpers/paths.js';

// No REDIS_URL from the environment the tests run in.
const env = { ...process.env, REDIS_URL: undefined };
const tempDirs: string[] = [];
const usedFolders: string[] = [];

/** A fresh folder to run vfleet in; its server, if any, is stopped after the file's tests. */
function aFolder(name = 'fleet'): string {
  const dir = mkdtempSync(`${tmpdir()}/vfleet-embedded-`);
  const cwd = `${dir}/${name}`;
  mkdirSync(cwd, { recursive: true });
  tempDirs.push(dir);
  usedFolders.push(cwd);
  return cwd;
}

async function serverPid(connection: RedisConnection): Promise<number> {
  const info = await connection.redis.info('server');
  return Number(/^process_id:(\d+)/m.exec(info)?.[1]);
}

function pidfilePid(cwd: string): number {
  return Number(readFileSync(embeddedRedisPaths(cwd).pidfile, 'utf8').trim());
}

/** A pid that no process has any more. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', '']);
  return child.pid as number;
}

after(async () => {
  for (const cwd of usedFolders) {
    if (!existsSync(`${cwd}/.vfleet`)) continue;
    const paths = embeddedRedisPaths(cwd);
    await stopEmbeddedRedis(cwd, { timeoutMs: 3_000 }).catch(() => undefined);
    // Whatever did not stop cleanly must not outlive the test run.
    if (existsSync(paths.pidfile)) {
      const pid = Number(readFileSync(paths.pidfile, 'utf8'));
      if (isProcessAlive(pid)) process.kill(pid, 'SIGKILL');
    }
    rmSync(paths.socket, { force: true });
  }
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

describe('the private redis-server', () => {
  it('starts once, is reused, stops with stopEmbeddedRedis and starts anew after', async () => {
    const cwd = aFolder('with a space');
    const first = await connectRedis({ cwd, env });
    const pid = await serverPid(first);
    assert.equal(first.embedded, true);
    assert.equal(first.url, `unix://${realpathSync(cwd)}/.vfleet/redis/redis.sock`);
    assert.equal(pidfilePid(cwd), pid);
    const config = Object.fromEntries(
      await Promise.all(
        ['port', 'appendonly', 'appendfsync', 'maxmemory-policy', 'unixsocketperm'].map(
          async (name) => (await first.redis.config('GET', name)) as [string, string],
        ),
      ),
    );
    assert.deepEqual(config, {
      port: '0',
      appendonly: 'yes',
      appendfsync: 'everysec',
      'maxmemory-policy': 'noeviction',
      unixsocketperm: '700',
    });
    await first.redis.set('kept', 'across restarts');
    await first.close();

    const second = await connectRedis({ cwd, env });
    assert.equal(await serverPid(second), pid, 'the running server is reused');
    await second.close();

    const stop = await stopEmbeddedRedis(cwd);
    assert.equal(stop.stopped, true);
    assert.equal(stop.stopped && stop.pid, pid);
    assert.equal(isProcessAlive(pid), false, 'the process is gone');
    const paths = embeddedRedisPaths(cwd);
    assert.equal(existsSync(paths.socket), false);
    assert.equal(existsSync(paths.pidfile), false);
    assert.ok(existsSync(`${paths.dir}/appendonlydir/appendonly.aof.manifest`), 'AOF on disk');
    assert.equal((await stopEmbeddedRedis(cwd)).stopped, false, 'a second stop has nothing to do');

    const third = await connectRedis({ cwd, env });
    assert.notEqual(await serverPid(third), pid, 'a new server');
    assert.equal(await third.redis.get('kept'), 'across restarts', 'data came back from the AOF');
    await third.close();
    assert.equal((await stopEmbeddedRedis(cwd)).stopped, true);
  });

  it('stopEmbeddedRedis in a folder vfleet never used does nothing and creates nothing', async () => {
    const cwd = aFolder();
    assert.equal((await stopEmbeddedRedis(cwd)).stopped, false);
    assert.equal(existsSync(`${cwd}/.vfleet`), false);
  });

  it('keeps .vfleet/ out of git', async () => {
    const cwd = aFolder();
    const connection = await connectRedis({ cwd, env });
    await connection.close();
    assert.match(readFileSync(`${cwd}/.vfleet/.gitignore`, 'utf8'), /^\*$/m);
    await stopEmbeddedRedis(cwd);
  });

  it('starts one server when connectRedis runs concurrently, in one process and in several', async () => {
    const cwd = aFolder();
    const connections = await Promise.all([1, 2, 3].map(() => connectRedis({ cwd, env })));
    const pids = await Promise.all(connections.map(serverPid));
    await Promise.all(connections.map((c) => c.close()));
    assert.equal(new Set(pids).size, 1, `one server: ${pids}`);
    await stopEmbeddedRedis(cwd);

    const module = fromRoot('dist', 'src', 'state', 'connect-redis.js');
    const script = `
      const { connectRedis } = await import(${JSON.stringify(module)});
      const c = await connectRedis({ cwd: process.cwd(), env: process.env });
      const info = await c.redis.info('server');
      process.stdout.write(/process_id:(\\d+)/.exec(info)[1]);
      await c.close();`;
    const runs = await Promise.all(
      [1, 2, 3, 4].map(
        () =>
          new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
            const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
              cwd,
              env,
            });
            let out = '';
            let err = '';
            child.stdout.on('data', (chunk) => {
              out += chunk;
            });
            child.stderr.on('data', (chunk) => {
              err += chunk;
            });
            child.on('exit', (code) => resolve({ code, out, err }));
          }),
      ),
    );
    for (const run of runs) assert.equal(run.code, 0, run.err);
    assert.equal(new Set(runs.map((r) => r.out)).size, 1, `one server: ${runs.map((r) => r.out)}`);
    assert.equal(String(pidfilePid(cwd)), runs[0]!.out);
    await stopEmbeddedRedis(cwd);
  });

  it('recovers a stale start lock: its holder is gone, or it is too old', async () => {
    const cwd = aFolder();
    const paths = embeddedRedisPaths(cwd);
    for (const stale of [
      { pid: deadPid(), token: 'crashed', since: Date.now() },
      { pid: process.pid, token: 'hung', since: Date.now() - 10 * 60_000 },
    ]) {
      mkdirSync(paths.dir, { recursive: true });
      writeFileSync(paths.lockfile, JSON.stringify(stale));
      const connection = await connectRedis({ cwd, env });
      await connection.close();
      assert.equal(existsSync(paths.lockfile), false, 'the lock is released after the start');
      await stopEmbeddedRedis(cwd);
    }
  });

  it('replaces a server that died (SIGKILL) and leaves a pidfile and socket behind', async () => {
    const cwd = aFolder();
    const first = await connectRedis({ cwd, env });
    const pid = await serverPid(first);
    await first.redis.set('acknowledged', 'before the crash');
    await first.close();
    process.kill(pid, 'SIGKILL');
    while (isProcessAlive(pid)) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.ok(existsSync(embeddedRedisPaths(cwd).pidfile), 'the pidfile outlived the server');

    const second = await connectRedis({ cwd, env });
    assert.notEqual(await serverPid(second), pid);
    assert.equal(await second.redis.get('acknowledged'), 'before the crash');
    await second.close();
    await stopEmbeddedRedis(cwd);
  });

  it('puts the socket in the tmpdir when the folder path is too long for one, and says so', async () => {
    const cwd = `${aFolder()}/${'deep-folder-name/'.repeat(6)}`;
    mkdirSync(cwd, { recursive: true });
    usedFolders.push(cwd);
    const messages: string[] = [];
    const connection = await connectRedis({ cwd, env, debug: (m) => messages.push(m) });
    const paths = embeddedRedisPaths(cwd);
    assert.equal(paths.socketInTmp, true);
    assert.ok(paths.socket.startsWith(tmpdir()), paths.socket);
    assert.ok(Buffer.byteLength(paths.socket) <= 103);
    assert.equal(connection.url, `unix://${paths.socket}`);
    assert.ok(messages.some((m) => m.includes('longer than a unix socket path may be')));
    await connection.close();
    assert.equal(embeddedRedisPaths(cwd).socket, paths.socket, 'every process finds the same');
    assert.equal((await stopEmbeddedRedis(cwd)).stopped, true);
    assert.equal(existsSync(paths.socket), false);
  });

  it('says how to install redis-server, or to set REDIS_URL, when it is not on the PATH', async () => {
    const cwd = aFolder();
    const emptyBin = mkdtempSync(`${tmpdir()}/vfleet-empty-path-`);
    tempDirs.push(emptyBin);
    await assert.rejects(connectRedis({ cwd, env: { ...env, PATH: emptyBin } }), (e: unknown) => {
      assert.ok(isVfleetError(e));
      assert.equal(e.code, 'redis-not-installed');
      assert.match(e.message, /apt-get install redis-server/);
      assert.match(e.message, /brew install redis/);
      assert.match(e.message, /REDIS_URL/);
      return true;
    });
  });
});
