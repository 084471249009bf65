// An apply whose Redis dies under it (issue 11, part 1; issue 17): the private redis-server of
// the folder, or a REDIS_URL server, SIGKILLed midway. Back within the wait (--redis-wait), the
// apply resumes by itself (issue 17; the private server is restarted by vfleet itself:
// redis-restart-cli). Not back within it — the private server that cannot be started again, a
// REDIS_URL server nobody restarts — the apply must say in one line that the state store went
// away (which server, no password), what was done, how to resume, and exit 1: no stack trace, no
// flood of connection errors, no waiting for ever. Then the next apply converges with every
// instance on exactly one host.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { fromRoot } from '../helpers/paths.js';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';

const bin = fromRoot('bin', 'vfleet.js');
const PASSWORD = 'lost-canary+4e1/pw';
/** Far above the store's 5 s loss bound: a guard against hanging, not a timing assertion. */
const EXIT_DEADLINE_MS = 60_000;

function workdir(): string {
  const dir = mkdtempSync(`${tmpdir()}/vfleet-lost-`);
  copyFileSync(fromRoot('fleet.yaml'), `${dir}/fleet.yaml`);
  cpSync(fromRoot('examples', 'inventories'), `${dir}/examples/inventories`, { recursive: true });
  return dir;
}

function vfleet(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, [bin, ...args], {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, VFLEET_EMBEDDED_BOOT_MS: '0', ...env },
    timeout: 120_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * Starts an apply, waits (polling the fleet's state version, no fixed sleep) until it has made
 * `progress` state changes, calls `kill`, and returns what the apply printed and its exit code.
 */
async function applyKilledMidway(
  dir: string,
  env: NodeJS.ProcessEnv,
  redis: () => Redis,
  kill: () => void,
  args: readonly string[] = ['--redis-wait', '3s'],
  progress = 6,
) {
  const child = spawn(
    process.execPath,
    [bin, 'apply', '--auto-approve', '--workers', '1', ...args],
    {
      cwd: dir,
      env: { ...process.env, VFLEET_EMBEDDED_BOOT_MS: '150', ...env },
    },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => {
    stdout += d;
  });
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  // A bound for a loaded machine (load 29 has been seen here), not a timing assertion.
  const deadline = Date.now() + 60_000;
  let watcher: Redis | undefined;
  for (;;) {
    if (Date.now() >= deadline) {
      // Not left reconnecting (to a socket that may be gone), which would hold the file open.
      watcher?.disconnect();
      child.kill('SIGKILL');
      assert.fail(`the apply made no progress: ${stdout}${stderr}`);
    }
    try {
      watcher ??= redis();
      if (Number(await watcher.get('vfleet:{lab}:version')) >= progress) break;
    } catch {
      // the private server is not started yet
    }
    await delay(20);
  }
  watcher?.disconnect();
  kill();
  const timer = setTimeout(() => child.kill('SIGKILL'), EXIT_DEADLINE_MS);
  const code = await exited;
  clearTimeout(timer);
  return { code, stdout, stderr };
}

function assertToldOnce(run: { code: number | null; stdout: string; stderr: string }, at: RegExp) {
  assert.equal(run.code, 1, run.stdout + run.stderr);
  assert.doesNotMatch(run.stderr, /^ {4}at /m, 'no stack trace');
  const lines = run.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line on stderr:\n${run.stderr.slice(0, 3000)}`);
  assert.match(lines[0] as string, /^vfleet: the state store went away: Redis at /);
  assert.match(lines[0] as string, at);
  const summary =
    /Apply interrupted: (\d+) of 32 actions done, (\d+) failed or skipped, (\d+) not run or unknown/.exec(
      run.stdout,
    );
  assert.ok(summary, run.stdout);
  assert.ok(Number(summary[1]) < 32 && Number(summary[3]) > 0, 'stopped midway');
  assert.match(run.stdout, /To resume, run vfleet apply again/);
}

/** Every instance of the spec runs, each on exactly one host. */
async function assertConverged(dir: string, env: NodeJS.ProcessEnv, redis: Redis) {
  const resumed = vfleet(['apply', '--auto-approve'], dir, env);
  assert.equal(resumed.code, 0, resumed.stdout + resumed.stderr);
  assert.equal(vfleet(['plan', '--detailed-exitcode'], dir, env).code, 0);
  const status = JSON.parse(vfleet(['status', '--json'], dir, env).stdout);
  assert.equal(status.instances.length, 26);
  const onHosts = new Map<string, number>();
  for (const key of await redis.keys('vfleet:{lab}:engine:*:instances')) {
    for (const name of await redis.hkeys(key)) onHosts.set(name, (onHosts.get(name) ?? 0) + 1);
  }
  assert.equal(onHosts.size, 26);
  assert.deepEqual(
    [...onHosts].filter(([, n]) => n !== 1),
    [],
    'each instance on exactly one host',
  );
  return resumed;
}

describe('an apply that loses its Redis', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  after(async () => {
    for (const c of cleanup) await c();
  });

  it('the private redis-server SIGKILLed and unable to start again: one line, a summary, exit 1; the next apply converges', async () => {
    const dir = workdir();
    cleanup.push(() => {
      vfleet(['down'], dir);
      rmSync(dir, { recursive: true, force: true });
    });
    const socket = `${dir}/.vfleet/redis/redis.sock`;
    const connect = () => new Redis({ path: socket, maxRetriesPerRequest: 1, lazyConnect: false });
    assert.equal(vfleet(['status'], dir).code, 0, 'starts the private redis-server');
    // No redis-server on the PATH of the apply: it cannot start the server again.
    const run = await applyKilledMidway(dir, { PATH: '/nonexistent' }, connect, () => {
      const pid = Number(readFileSync(`${dir}/.vfleet/redis/redis.pid`, 'utf8'));
      process.kill(pid, 'SIGKILL');
    });
    assertToldOnce(run, /unix:\/\/\S+redis\.sock has not answered for 3 s/);
    assert.match(run.stdout, /restarts the private redis-server from its AOF/);

    // The next apply restarts the server from its AOF, removes the dead apply's lock, resumes.
    const resumed = await (async () => {
      const started = vfleet(['status'], dir); // starts the private server again
      assert.equal(started.code, 0, started.stderr);
      const redis = connect();
      try {
        return await assertConverged(dir, {}, redis);
      } finally {
        redis.disconnect();
      }
    })();
    assert.match(resumed.stderr, /apply \S+ \(pid \d+\) is gone; taking over its lock/);
  });

  /** A REDIS_URL server with a canary password, every write on disk before it is answered. */
  async function durableServer(): Promise<{
    server: TestRedisServer;
    dir: string;
    env: NodeJS.ProcessEnv;
  }> {
    const server = await startRedisServer({
      tcp: true,
      args: [
        '--requirepass',
        PASSWORD,
        '--maxmemory-policy',
        'noeviction',
        '--appendonly',
        'yes',
        '--appendfsync',
        'always',
      ],
    });
    cleanup.push(() => server.stop());
    const dir = workdir();
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const env = {
      REDIS_URL: server.url.replace('redis://', `redis://:${encodeURIComponent(PASSWORD)}@`),
    };
    return { server, dir, env };
  }

  const assertNoPassword = (text: string) => {
    for (const form of [PASSWORD, encodeURIComponent(PASSWORD)]) {
      assert.ok(!text.includes(form), 'the password is not shown');
    }
  };

  it('a REDIS_URL server SIGKILLed and not back within --redis-wait: the same, its password never shown; converges once it is back', async () => {
    const { server, dir, env } = await durableServer();
    const run = await applyKilledMidway(
      dir,
      env,
      () => server.client({ password: PASSWORD }),
      () => process.kill(server.pid, 'SIGKILL'),
    );
    assertToldOnce(run, /redis:\/\/:\*\*\*@127\.0\.0\.1:\d+\/0 has not answered for 3 s/);
    assertNoPassword(run.stdout + run.stderr);
    await server.restart();
    await assertConverged(dir, env, server.client({ password: PASSWORD }));
  });

  it('a REDIS_URL server SIGKILLed and restarted within the wait: the apply resumes by itself, no action run twice', async (t) => {
    const { server, dir, env } = await durableServer();
    let restarted: Promise<void> | undefined;
    const run = await applyKilledMidway(
      dir,
      env,
      () => server.client({ password: PASSWORD }),
      // As a supervisor would: SIGKILL, then the same server again on the same port and files.
      () => {
        restarted = server.restart();
      },
      [],
      12,
    );
    await restarted;
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.doesNotMatch(run.stdout + run.stderr, /^ {4}at /m, 'no stack trace');
    assert.match(run.stderr, /Redis came back as another server .* resuming \(round 2\)/);
    const resumed =
      /Resumed once after Redis came back as another server: (\d+) actions? enqueued again/.exec(
        run.stdout,
      );
    assert.ok(resumed, run.stdout);
    assert.match(run.stdout, /Apply complete: 32 actions done\./);
    // Every write was on disk before Redis answered it: nothing was lost, so no action ran in
    // both rounds.
    const done = [...run.stdout.matchAll(/"action":"([^"]+)","outcome":"done"/g)].map((m) => m[1]);
    assert.deepEqual(
      done.filter((a, i) => done.indexOf(a) !== i),
      [],
      'no action reported done twice',
    );
    assertNoPassword(run.stdout + run.stderr);
    const before = /(\d+) actions? done before/.exec(run.stderr)?.[1];
    t.diagnostic(
      `${done.length} actions reported done (${before} before the restart), ${resumed[1]} enqueued again after it`,
    );
    const redis = server.client({ password: PASSWORD });
    const again = await assertConverged(dir, env, redis);
    assert.match(again.stdout, /No changes|0 to create/);
  });
});
