// The benchmarks' own redis-server: 127.0.0.1 on a random port, `noeviction`, files in a folder
// of its own. By default no persistence, the folder temporary and removed when it stops; with
// `aof`, an append-only file fsynced every second in the folder given, which a server killed and
// started again (`killAndRestart`, bench:chaos's redis-kill) reads back.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis, type RedisOptions } from 'ioredis';

export interface BenchRedisOptions {
  /** `--appendonly yes --appendfsync everysec` (default: `--appendonly no`). */
  readonly aof?: boolean;
  /** The server's folder, left in place by `stop` (default: a temporary one, removed). */
  readonly dir?: string;
  /**
   * How long a start waits for the server's PONG, then fails (default: about 5 s, then goes on
   * as if it had answered).
   */
  readonly readyMs?: number;
}

export async function startRedis(options: BenchRedisOptions = {}) {
  const dir = options.dir ?? mkdtempSync(`${tmpdir()}/vfleet-bench-`);
  const port = 20000 + Math.floor(Math.random() * 20000);
  const persistence = options.aof
    ? ['--appendonly', 'yes', '--appendfsync', 'everysec']
    : ['--appendonly', 'no'];
  const spawnServer = () =>
    spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--dir',
        dir,
        '--save',
        '',
        ...persistence,
        '--maxmemory-policy',
        'noeviction',
      ],
      { stdio: 'ignore' },
    );
  let child = spawnServer();
  const connect = (extra: RedisOptions = {}) =>
    new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: null, ...extra });
  const probe = connect();
  probe.on('error', () => undefined); // refused until the server is up
  const ready = async () => {
    const deadline = Date.now() + (options.readyMs ?? 0);
    for (let i = 0; ; i++) {
      try {
        await probe.ping(); // LOADING while it reads its AOF back
        return;
      } catch {
        if (options.readyMs === undefined ? i >= 99 : Date.now() >= deadline) break;
        await delay(50);
      }
    }
    if (options.readyMs !== undefined) {
      throw new Error(`redis-server did not answer within ${options.readyMs / 1000} s`);
    }
  };
  const exited = (c: ChildProcess) =>
    c.exitCode !== null || c.signalCode !== null
      ? Promise.resolve()
      : new Promise<void>((done) => c.once('exit', () => done()));
  await ready();
  return {
    port,
    dir,
    connect,
    probe,
    /** The running server's pid. */
    get pid() {
      return child.pid;
    },
    /** SIGKILLed (up to ~1 s of writes lost with `aof`), then started again on its folder. */
    async killAndRestart() {
      child.kill('SIGKILL');
      await exited(child);
      child = spawnServer();
      await ready();
    },
    /** SIGKILLed at once, nothing awaited (a run stopped from outside). */
    kill() {
      child.kill('SIGKILL');
    },
    async stop() {
      await probe.quit();
      child.kill('SIGTERM');
      if (options.dir === undefined) {
        await delay(200);
        rmSync(dir, { recursive: true, force: true });
      } else {
        await exited(child);
      }
    },
  };
}

export type BenchRedis = Awaited<ReturnType<typeof startRedis>>;
