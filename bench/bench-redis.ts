// The benchmarks' own redis-server: 127.0.0.1 on a random port, no persistence, `noeviction`,
// files in a temporary folder removed when it stops.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';

export async function startRedis() {
  const dir = mkdtempSync(`${tmpdir()}/vfleet-bench-`);
  const port = 20000 + Math.floor(Math.random() * 20000);
  const child = spawn(
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
      '--appendonly',
      'no',
      '--maxmemory-policy',
      'noeviction',
    ],
    { stdio: 'ignore' },
  );
  const connect = () => new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: null });
  const probe = connect();
  probe.on('error', () => undefined); // refused until the server is up
  for (let i = 0; i < 100; i++) {
    try {
      await probe.ping();
      break;
    } catch {
      await delay(50);
    }
  }
  return {
    port,
    dir,
    connect,
    probe,
    async stop() {
      await probe.quit();
      child.kill('SIGTERM');
      await delay(200);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
