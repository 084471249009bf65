// A real redis-server for one test file (habit 10, docs/architecture.md): its own mkdtemp folder and unix socket,
// no TCP port unless a test needs a redis:// URL, nothing written to disk. The caller stops it
// in an after() hook, which also runs when a test fails.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';

export interface TestRedisServer {
  /**
   * `redis://127.0.0.1:<port>` with `tcp: true`, `redis://<address>:<port>` with `netns`;
   * otherwise `unix://<socket>` (a label only).
   */
  readonly url: string;
  readonly socket: string;
  readonly dir: string;
  /** The current server process (a restart changes it). */
  readonly pid: number;
  /** A client on the unix socket (no password: pass `password` for a server that wants one; `db` selects a database). */
  client(options?: { password?: string; db?: number }): Redis;
  stop(): Promise<void>;
  /** SIGKILLs the server (no shutdown, as a crash), then starts it again on the same port and dir. */
  restart(): Promise<void>;
}

export interface TestRedisOptions {
  /** Extra redis-server arguments, e.g. ['--maxmemory-policy', 'allkeys-lru']. */
  readonly args?: readonly string[];
  /** Also listen on a free TCP port of 127.0.0.1, for tests of REDIS_URL. */
  readonly tcp?: boolean;
  /**
   * Run it inside this network namespace (`ip netns exec`, which execs: the pid is the
   * server's), listening on `address:port` there besides the unix socket (netns-machines.ts).
   */
  readonly netns?: { readonly name: string; readonly address: string; readonly port: number };
}

// A bound for a loaded machine (the suite runs files side by side), not a timing test.
const START_TIMEOUT_MS = 30_000;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address
          ? resolve(address.port)
          : reject(new Error('no port')),
      );
    });
  });
}

function pingReplies(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const conn = createConnection(socket);
    const done = (ok: boolean) => {
      conn.destroy();
      resolve(ok);
    };
    conn.setTimeout(500, () => done(false));
    conn.on('connect', () => conn.write('PING\r\n'));
    conn.on('data', (chunk) =>
      done(chunk.toString().startsWith('+') || chunk.toString().startsWith('-')),
    );
    conn.on('error', () => done(false));
  });
}

async function startOnce(dir: string, options: TestRedisOptions): Promise<TestRedisServer | null> {
  const socket = `${dir}/redis.sock`;
  const { netns } = options;
  const port = netns ? netns.port : options.tcp ? await freePort() : 0;
  const args = [
    '--port',
    String(port),
    ...(netns ? ['--bind', netns.address] : options.tcp ? ['--bind', '127.0.0.1'] : []),
    '--unixsocket',
    socket,
    '--unixsocketperm',
    '700',
    '--dir',
    dir,
    '--save',
    '',
    '--appendonly',
    'no',
    ...(options.args ?? []),
  ];
  const launch = async () => {
    const [command, ...rest] = [
      ...(netns ? ['ip', 'netns', 'exec', netns.name] : []),
      'redis-server',
      ...args,
    ];
    const child: ChildProcess = spawn(command as string, rest, {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout?.on('data', (chunk) => {
      output += chunk;
    });
    child.stderr?.on('data', (chunk) => {
      output += chunk;
    });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.once('error', () => undefined);
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!(await pingReplies(socket))) {
      if (child.exitCode !== null || child.signalCode !== null) {
        // Most likely the TCP port was taken between freePort() and the bind: try another.
        if (options.tcp && /Address already in use/.test(output)) return null;
        throw new Error(`redis-server exited at start: ${output}`);
      }
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`redis-server did not answer within ${START_TIMEOUT_MS} ms: ${output}`);
      }
      await delay(10);
    }
    return { child, exited };
  };
  let running = await launch();
  if (running === null) return null;
  let { child, exited } = running;
  const clients: Redis[] = [];
  return {
    url: netns
      ? `redis://${netns.address}:${port}`
      : options.tcp
        ? `redis://127.0.0.1:${port}`
        : `unix://${socket}`,
    socket,
    dir,
    get pid() {
      return child.pid as number;
    },
    async restart() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
      // The port is free again once the process is gone; another process could take it in
      // between, which this (a test helper) does not guard against.
      running = await launch();
      if (running === null) throw new Error('redis-server could not bind its port again');
      ({ child, exited } = running);
    },
    client(clientOptions = {}) {
      const redis = new Redis({ path: socket, maxRetriesPerRequest: 1, ...clientOptions });
      clients.push(redis);
      return redis;
    },
    async stop() {
      await Promise.all(clients.map((c) => c.quit().catch(() => c.disconnect())));
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function startRedisServer(options: TestRedisOptions = {}): Promise<TestRedisServer> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const dir = mkdtempSync(`${tmpdir()}/vfleet-test-redis-`);
    const server = await startOnce(dir, options).catch((e) => {
      rmSync(dir, { recursive: true, force: true });
      throw e;
    });
    if (server) return server;
    rmSync(dir, { recursive: true, force: true });
  }
  throw new Error('redis-server could not bind a free TCP port in 5 attempts');
}
