// A real redis-server for a test file (STYLE.md #10): its own temp folder and unix socket, no
// TCP port, stopped by the caller (an after() hook).
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';

export interface TestRedis {
  readonly dir: string;
  readonly socket: string;
  /** A new client on the server; closed by stop(). */
  client(): Redis;
  stop(): Promise<void>;
}

export async function startTestRedis(extraArgs: readonly string[] = []): Promise<TestRedis> {
  const dir = mkdtempSync(`${tmpdir()}/vfleet-redis-`);
  const socket = `${dir}/redis.sock`;
  const child: ChildProcess = spawn(
    'redis-server',
    [
      '--port',
      '0',
      '--unixsocket',
      socket,
      '--dir',
      dir,
      '--save',
      '',
      '--appendonly',
      'no',
      ...extraArgs,
    ],
    { stdio: 'ignore' },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  for (let i = 0; i < 200 && !existsSync(socket); i++) await delay(10);
  if (!existsSync(socket)) {
    child.kill('SIGKILL');
    throw new Error('redis-server did not start (is it installed? apt-get install redis-server)');
  }
  const clients: Redis[] = [];
  return {
    dir,
    socket,
    client() {
      const redis = new Redis({ path: socket, maxRetriesPerRequest: 1 });
      clients.push(redis);
      return redis;
    },
    async stop() {
      await Promise.all(clients.map((c) => c.quit().catch(() => c.disconnect())));
      child.kill('SIGTERM');
      await Promise.race([exited, delay(3000)]);
      if (child.exitCode === null) child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
