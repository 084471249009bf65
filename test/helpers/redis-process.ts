// One redis-server process on a loopback TCP port, for the Cluster and Sentinel helpers
// (redis-cluster.ts, redis-sentinel.ts): started, waited for until it answers PING, stopped by
// its pid. Nothing is written to disk but what the process needs (its nodes.conf, a Sentinel's
// config), in the folder the caller gives and removes.
import { type ChildProcess, spawn } from 'node:child_process';
import { createConnection, createServer } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';

// A bound for a loaded machine (test files run side by side), not a timing test.
const START_TIMEOUT_MS = 30_000;

/** A free TCP port of 127.0.0.1 (another process may take it before it is bound: rare). */
export function freePort(): Promise<number> {
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

/** Sends inline commands on a fresh connection; resolves with the whole reply text. */
export function tcpCommand(
  port: number,
  lines: readonly string[],
  timeoutMs = 1_000,
): Promise<string> {
  return new Promise((resolve) => {
    const conn = createConnection(port, '127.0.0.1');
    let text = '';
    const done = () => {
      conn.destroy();
      resolve(text);
    };
    conn.setTimeout(timeoutMs, done);
    conn.on('connect', () => conn.write(`${lines.join('\r\n')}\r\n`));
    conn.on('data', (chunk) => {
      text += chunk.toString();
      // Enough for the probes here: a reply per line, each ending in CR LF.
      if (text.split('\r\n').length > lines.length) setTimeout(done, 20);
    });
    conn.on('error', done);
  });
}

export interface RedisProcess {
  readonly port: number;
  readonly pid: number;
  /** What it printed (its log goes to stdout). */
  output(): string;
  /** SIGKILL, as a crash. */
  kill(): Promise<void>;
  /** SIGTERM, SIGKILL after 3 s; resolves once the process is gone. */
  stop(): Promise<void>;
}

/**
 * Starts a redis-server on the ports `build` picks (with `freePort`), and picks them again when
 * one was taken by another process between the probe and the bind (test files run side by side;
 * seen once in a loaded run).
 */
export async function startOnFreePorts(
  build: () => Promise<{ readonly port: number; readonly args: readonly string[] }>,
): Promise<RedisProcess> {
  for (let attempt = 1; ; attempt++) {
    const { port, args } = await build();
    try {
      return await startRedisProcess(port, args);
    } catch (e) {
      if (attempt >= 5 || !/Address already in use/.test(String(e))) throw e;
    }
  }
}

/** Starts `redis-server ...args` (which must make it listen on `port`) and waits for PING. */
export async function startRedisProcess(
  port: number,
  args: readonly string[],
): Promise<RedisProcess> {
  const child: ChildProcess = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (chunk) => {
    output += chunk;
  });
  child.stderr?.on('data', (chunk) => {
    output += chunk;
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.once('error', () => undefined);
  const gone = () => child.exitCode !== null || child.signalCode !== null;
  const deadline = Date.now() + START_TIMEOUT_MS;
  // PING answers +PONG, or -NOAUTH where a password is wanted: either way, it is up.
  while (!/^[+-]/.test(await tcpCommand(port, ['PING'], 500))) {
    if (gone()) throw new Error(`redis-server exited at start: ${output}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`redis-server did not answer within ${START_TIMEOUT_MS} ms: ${output}`);
    }
    await delay(20);
  }
  return {
    port,
    pid: child.pid as number,
    output: () => output,
    async kill() {
      if (!gone()) process.kill(child.pid as number, 'SIGKILL');
      await exited;
    },
    async stop() {
      if (gone()) return;
      process.kill(child.pid as number, 'SIGTERM');
      const timer = setTimeout(() => {
        if (!gone()) process.kill(child.pid as number, 'SIGKILL');
      }, 3_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
