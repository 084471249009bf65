// Where vfleet's Redis is, and a client on it (DESIGN.md, CLI v1). Without REDIS_URL, vfleet
// starts — or reuses — a private redis-server for the current folder, its files in
// `.vfleet/redis/`: a unix socket and no TCP port (nothing else on the machine can reach it by
// accident), AOF fsynced every second (a crash loses at most a second of state), and
// `noeviction` (Redis must refuse a write rather than silently drop a lock, a job or an
// instance record). It is a daemon, so it outlives the command that started it and the next
// command reuses it; `vfleet down` stops it. With REDIS_URL, vfleet uses that server, after
// checking that it does not evict. The password is kept out of every message: ioredis puts it
// in the arguments of the errors it raises for HELLO/AUTH, so those errors are never rethrown
// or attached as a cause, only their scrubbed message is quoted.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  accessSync,
  constants,
  existsSync,
  lstatSync,
  mkdirSync,
  realpathSync,
  writeFileSync,
} from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { createConnection, isIP } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis, type RedisOptions } from 'ioredis';
import { VfleetError } from '../model/errors.js';
import { withFileLock } from './file-lock.js';
import { FleetState } from './fleet-state.js';
import { isProcessAlive, isRedisServerProcess } from './process-alive.js';
import { parseRedisUrl, scrubSecret } from './redis-url.js';

export interface RedisConnection {
  readonly redis: Redis;
  /** Where vfleet is connected, safe to show: the password is `***`. */
  readonly url: string;
  /** True when this is the private server of the folder, which `vfleet down` stops. */
  readonly embedded: boolean;
  /** Closes the client; an embedded server keeps running for the next command. */
  close(): Promise<void>;
}

export interface ConnectRedisOptions {
  /** The folder whose `.vfleet/` holds the private server. */
  readonly cwd: string;
  readonly env: NodeJS.ProcessEnv;
  /** Diagnostics for `VFLEET_DEBUG`; never given a password. */
  readonly debug?: (message: string) => void;
  /** How long a starting server may take to answer PING. */
  readonly startTimeoutMs?: number;
}

export interface EmbeddedRedisPaths {
  readonly dir: string;
  readonly socket: string;
  readonly pidfile: string;
  readonly logfile: string;
  readonly lockfile: string;
  /** True when `<dir>/redis.sock` was too long for a unix socket and `socket` is in the tmpdir. */
  readonly socketInTmp: boolean;
}

export type StopOutcome =
  | { readonly stopped: true; readonly pid: number | null; readonly paths: EmbeddedRedisPaths }
  | { readonly stopped: false; readonly paths: EmbeddedRedisPaths };

/**
 * sun_path is 108 bytes on Linux (107 usable) and 104 on macOS and the BSDs (103 usable); the
 * smaller bound keeps a folder's socket where it is on every platform vfleet runs on.
 */
const MAX_SOCKET_PATH = 103;
const DEFAULT_START_TIMEOUT_MS = 5_000;
const STOP_TIMEOUT_MS = 10_000;
const LOCK = { timeoutMs: 15_000, staleMs: 30_000 };
const PROBE_TIMEOUT_MS = 1_000;
const CLOSE_TIMEOUT_MS = 2_000;
/** How long a connected server has to answer the handshake (HELLO, AUTH, INFO). */
const HANDSHAKE_TIMEOUT_MS = 10_000;
const FALLBACK_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

const noDebug = (_message: string): void => undefined;

/** `promise`, or `fallback` after `ms`; the timer is cleared so it keeps no process alive. */
async function within<T, F>(ms: number, promise: Promise<T>, fallback: F): Promise<T | F> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<F>((resolve) => {
    timer = setTimeout(() => resolve(fallback), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------
// Connecting

export async function connectRedis(options: ConnectRedisOptions): Promise<RedisConnection> {
  const debug = options.debug ?? noDebug;
  const url = options.env.REDIS_URL;
  if (url !== undefined && url.trim() !== '') {
    const endpoint = parseRedisUrl(url);
    refuseDebugWithPassword(endpoint.password, [options.env.DEBUG, process.env.DEBUG]);
    const tlsOptions = endpoint.tls
      ? { tls: isIP(endpoint.host) ? {} : { servername: endpoint.host } }
      : {};
    const redis = await openClient(
      {
        host: endpoint.host,
        port: endpoint.port,
        username: endpoint.username,
        password: endpoint.password,
        db: endpoint.db,
        ...tlsOptions,
      },
      endpoint.redacted,
      endpoint.password,
      debug,
    );
    await refuseEviction(redis, endpoint.redacted);
    return connection(redis, endpoint.redacted, false);
  }
  const paths = embeddedRedisPaths(options.cwd);
  if (paths.socketInTmp) {
    debug(
      `${join(paths.dir, 'redis.sock')} is longer than a unix socket path may be; the private redis-server listens on ${paths.socket} instead`,
    );
  }
  await ensureEmbeddedServer(paths, options.env, options.startTimeoutMs, debug);
  const shown = `unix://${paths.socket}`;
  const redis = await openClient({ path: paths.socket }, shown, undefined, debug);
  await refuseEviction(redis, shown);
  return connection(redis, shown, true);
}

/**
 * Whether DEBUG (the `debug` package's variable) turns on `namespace`, by that package's rules:
 * comma- or space-separated patterns, `*` a wildcard, a leading `-` excludes.
 */
export function debugEnables(debugVariable: string | undefined, namespace: string): boolean {
  const patterns = (debugVariable ?? '').split(/[\s,]+/).filter(Boolean);
  const matches = (pattern: string) =>
    new RegExp(`^${pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*?')}$`).test(
      namespace,
    );
  if (patterns.some((p) => p.startsWith('-') && matches(p.slice(1)))) return false;
  return patterns.some((p) => !p.startsWith('-') && matches(p));
}

/**
 * ioredis's debug output prints every command with its arguments, AUTH's password included;
 * vfleet cannot redact it, so it refuses to send a password while that output is on.
 */
function refuseDebugWithPassword(password: string | undefined, debugVariables: unknown[]): void {
  if (password === undefined) return;
  if (!debugVariables.some((d) => typeof d === 'string' && debugEnables(d, 'ioredis:redis'))) {
    return;
  }
  throw new VfleetError(
    'redis-debug-password',
    "DEBUG turns on ioredis's debug output, which would print the Redis password from REDIS_URL; unset DEBUG or exclude ioredis (add ,-ioredis:* to it)",
  );
}

function connection(redis: Redis, url: string, embedded: boolean): RedisConnection {
  return {
    redis,
    url,
    embedded,
    async close() {
      const quit = redis.quit().then(
        () => true,
        () => false,
      );
      if (!(await within(CLOSE_TIMEOUT_MS, quit, false))) redis.disconnect();
    },
  };
}

async function openClient(
  target: RedisOptions,
  shown: string,
  password: string | undefined,
  debug: (message: string) => void,
): Promise<Redis> {
  let connected = false;
  let lastError: string | undefined;
  const redis = new Redis({
    ...target,
    lazyConnect: true,
    connectTimeout: 5_000,
    // The first connection fails fast with a clear message; once connected, a lost connection
    // is retried (a worker outlives a Redis restart).
    retryStrategy: (times) => (connected ? Math.min(100 * times, 2_000) : null),
  });
  // Without a listener ioredis prints errors itself; the scrubbed message is all that leaves.
  redis.on('error', (e: Error) => {
    lastError = scrubSecret(String(e?.message), password);
    if (connected) debug(`redis ${shown}: ${lastError}`);
  });
  try {
    // connectTimeout covers the TCP connect only: a server that accepts and then says nothing
    // would leave the handshake waiting for ever.
    const ready = await within(
      HANDSHAKE_TIMEOUT_MS,
      redis.connect().then(() => true),
      false,
    );
    if (!ready) throw new Error(`no Redis reply within ${HANDSHAKE_TIMEOUT_MS / 1000} s`);
    // ioredis reports a refused SELECT (a db number past the server's `databases`) as an event
    // and carries on in db 0; vfleet would then read and write another fleet's database.
    if (target.db) await redis.select(target.db);
  } catch (e) {
    // Already ended after a fatal error; disconnecting again would arm a timer on a closed
    // stream that nothing clears, holding the process open for ioredis's disconnectTimeout.
    if (redis.status !== 'end') redis.disconnect();
    const raw = lastError ?? scrubSecret(String((e as Error)?.message), password);
    // The reason is one line: a server's error text could carry more.
    const reason = /Unknown RESP type|Protocol error/.test(raw)
      ? 'the server does not speak the Redis protocol'
      : /^NOAUTH/.test(raw) && password === undefined
        ? 'NOAUTH: the server wants a password and REDIS_URL has none'
        : (raw.split('\n')[0] ?? '').slice(0, 200);
    const hint = /WRONGPASS|NOAUTH|AUTH/.test(reason)
      ? ' (check the user name and password in REDIS_URL)'
      : /DB index/.test(reason)
        ? ` (REDIS_URL names database ${target.db})`
        : '';
    throw new VfleetError(
      'redis-connect',
      `cannot connect to Redis at ${shown}: ${reason}${hint}`,
      {
        retryable: true,
      },
    );
  }
  connected = true;
  return redis;
}

/** Reads maxmemory-policy: CONFIG GET, or INFO memory where CONFIG is disabled (managed Redis). */
async function evictionPolicy(redis: Redis): Promise<string | undefined> {
  try {
    const reply: unknown = await redis.config('GET', 'maxmemory-policy');
    const value = Array.isArray(reply)
      ? reply[1]
      : (reply as Record<string, unknown> | null)?.['maxmemory-policy'];
    if (typeof value === 'string' && value !== '') return value;
  } catch {
    // CONFIG renamed away or not permitted: INFO is nearly always allowed.
  }
  try {
    const info = await redis.info('memory');
    return /^maxmemory_policy:(\S+)/m.exec(info)?.[1];
  } catch {
    return undefined;
  }
}

async function refuseEviction(redis: Redis, shown: string): Promise<void> {
  const policy = await evictionPolicy(redis);
  if (policy === 'noeviction') return;
  redis.disconnect();
  const fix =
    'run `redis-cli CONFIG SET maxmemory-policy noeviction` and set `maxmemory-policy noeviction` in redis.conf so that it survives a restart (on a managed Redis: in its parameter group or settings)';
  if (policy === undefined) {
    throw new VfleetError(
      'redis-eviction-policy',
      `cannot read the maxmemory-policy of Redis at ${shown} (both CONFIG GET and INFO were refused); vfleet needs noeviction: ${fix}`,
    );
  }
  throw new VfleetError(
    'redis-eviction-policy',
    `Redis at ${shown} has maxmemory-policy ${policy}: under memory pressure it would silently drop vfleet's locks, jobs and state. vfleet needs noeviction: ${fix}`,
  );
}

// ---------------------------------------------------------------------------------------------
// The private server

/** Where the private server of `cwd` keeps its files. */
export function embeddedRedisPaths(cwd: string): EmbeddedRedisPaths {
  const base = realpathSync(cwd);
  const dir = join(base, '.vfleet', 'redis');
  const preferred = join(dir, 'redis.sock');
  const files = {
    dir,
    pidfile: join(dir, 'redis.pid'),
    logfile: join(dir, 'redis.log'),
    lockfile: join(dir, 'start.lock'),
  };
  if (Buffer.byteLength(preferred) <= MAX_SOCKET_PATH) {
    return { ...files, socket: preferred, socketInTmp: false };
  }
  // Named by the folder, so every vfleet process in that folder finds the same socket.
  const hash = createHash('sha256').update(base).digest('hex').slice(0, 16);
  const socket = join(privateTmpDir(), `${hash}.sock`);
  if (Buffer.byteLength(socket) > MAX_SOCKET_PATH) {
    throw new VfleetError(
      'redis-socket-path',
      `both ${preferred} and ${socket} are too long for a unix socket; set TMPDIR to a short folder or set REDIS_URL`,
    );
  }
  return { ...files, socket, socketInTmp: true };
}

/**
 * `<tmpdir>/vfleet-<uid>`, 0700 and ours: a socket in a shared tmpdir could otherwise be
 * pre-created (or answered) by another user.
 */
function privateTmpDir(): string {
  const uid = process.getuid?.() ?? 0;
  const dir = join(tmpdir(), `vfleet-${uid}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const stat = lstatSync(dir);
  if (!stat.isDirectory() || stat.uid !== uid || (stat.mode & 0o077) !== 0) {
    throw new VfleetError(
      'redis-socket-path',
      `${dir} must be a folder owned by you and private (mode 0700) to hold the Redis socket; remove it or set TMPDIR`,
    );
  }
  return dir;
}

function findExecutable(name: string, pathVariable: string | undefined): string | undefined {
  for (const folder of (pathVariable ?? FALLBACK_PATH).split(delimiter)) {
    if (folder === '') continue;
    const candidate = join(folder, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

async function readPid(pidfile: string): Promise<number | null> {
  try {
    const pid = Number.parseInt((await readFile(pidfile, 'utf8')).trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/**
 * Sends one inline command on a raw socket and returns the first line of the reply, or null
 * when nothing answers (no socket, refused, closed, timed out). Raw, so that probing a
 * socket needs no client with reconnection and offline queues of its own.
 */
function inlineCommand(socket: string, command: string, timeoutMs: number): Promise<string | null> {
  return new Promise((resolve) => {
    let settled = false;
    let buffered = '';
    const conn = createConnection(socket);
    const finish = (line: string | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      conn.destroy();
      resolve(line);
    };
    const timer = setTimeout(() => finish(null), timeoutMs);
    conn.setEncoding('utf8');
    conn.on('connect', () => conn.write(`${command}\r\n`));
    conn.on('data', (chunk: string) => {
      buffered += chunk;
      const end = buffered.indexOf('\r\n');
      if (end >= 0) finish(buffered.slice(0, end));
    });
    conn.on('error', () => finish(null));
    conn.on('close', () => finish(null));
  });
}

/** A server answers when PING gets any reply: `-LOADING` means it is alive and reading its AOF. */
async function answers(socket: string): Promise<boolean> {
  if (!existsSync(socket)) return false;
  const reply = await inlineCommand(socket, 'PING', PROBE_TIMEOUT_MS);
  return reply !== null && (reply.startsWith('+') || reply.startsWith('-'));
}

/** The pid of the folder's server when its pidfile names a live process and its socket answers. */
async function runningServer(paths: EmbeddedRedisPaths): Promise<number | null> {
  const pid = await readPid(paths.pidfile);
  if (pid === null || !isProcessAlive(pid)) return null;
  return (await answers(paths.socket)) ? pid : null;
}

async function ensureEmbeddedServer(
  paths: EmbeddedRedisPaths,
  env: NodeJS.ProcessEnv,
  startTimeoutMs: number | undefined,
  debug: (message: string) => void,
): Promise<void> {
  const running = await runningServer(paths);
  if (running !== null) {
    debug(`reusing the private redis-server (pid ${running}) on ${paths.socket}`);
    return;
  }
  mkdirSync(paths.dir, { recursive: true, mode: 0o700 });
  // The folder is per machine and holds the database: keep it out of the user's git repo.
  const ignore = join(paths.dir, '..', '.gitignore');
  if (!existsSync(ignore))
    writeFileSync(ignore, '# created by vfleet: local state, not for git\n*\n');
  await withFileLock(
    paths.lockfile,
    { ...LOCK, purpose: 'starting the private redis-server' },
    async () => {
      // Double check: a process that held the lock before us may have started it meanwhile.
      const started = await runningServer(paths);
      if (started !== null) {
        debug(`reusing the private redis-server (pid ${started}) another vfleet process started`);
        return;
      }
      if (await answers(paths.socket)) {
        throw new VfleetError(
          'redis-embedded',
          `something answers on ${paths.socket} but ${paths.pidfile} names no running redis-server; stop that server (or remove the socket) and retry`,
        );
      }
      await startServer(paths, env, startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS, debug);
    },
  );
}

function serverArgs(paths: EmbeddedRedisPaths): string[] {
  // Redis 7 quotes option values it reads from argv, so paths with spaces are safe here.
  return [
    '--port',
    '0',
    '--unixsocket',
    paths.socket,
    '--unixsocketperm',
    '700',
    '--dir',
    paths.dir,
    '--appendonly',
    'yes',
    '--appendfsync',
    'everysec',
    '--save',
    '',
    '--maxmemory-policy',
    'noeviction',
    '--daemonize',
    'yes',
    '--pidfile',
    paths.pidfile,
    '--logfile',
    paths.logfile,
  ];
}

async function logTail(logfile: string): Promise<string> {
  const text = await readFile(logfile, 'utf8').catch(() => '');
  const lines = text.trimEnd().split('\n').filter(Boolean).slice(-5);
  return lines.length === 0 ? '' : `; its last lines:\n  ${lines.join('\n  ')}`;
}

async function startServer(
  paths: EmbeddedRedisPaths,
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
  debug: (message: string) => void,
): Promise<void> {
  const executable = findExecutable('redis-server', env.PATH);
  if (executable === undefined) {
    throw new VfleetError(
      'redis-not-installed',
      'redis-server is not installed (vfleet starts a private one when REDIS_URL is not set). Install it — `sudo apt-get install redis-server` on Debian/Ubuntu, `brew install redis` on macOS — or set REDIS_URL=redis://[user:password@]host:port/db to use a Redis server you run',
    );
  }
  // Leftovers of a server that did not shut down cleanly; the pidfile would name a stranger.
  await rm(paths.pidfile, { force: true });
  await rm(paths.socket, { force: true });
  debug(`starting ${executable} for ${paths.dir}`);
  // `daemonize yes`: this child forks the server and exits; the server calls setsid, so it
  // outlives this process and its terminal. Its own output goes to the logfile.
  const child = spawn(executable, serverArgs(paths), {
    cwd: paths.dir,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk) => {
    output += chunk;
  });
  child.stderr.on('data', (chunk) => {
    output += chunk;
  });
  const exited = new Promise<number | null>((resolve) => {
    child.once('error', () => resolve(-1));
    child.once('exit', (code) => resolve(code));
  });
  const exit = await within(timeoutMs, exited, 'timeout' as const);
  if (exit !== 0) {
    if (exit === 'timeout') child.kill('SIGKILL');
    const said = output.trim() === '' ? '' : `: ${output.trim().split('\n').slice(-3).join(' ')}`;
    throw new VfleetError(
      'redis-start',
      `${executable} failed to start (exit ${exit})${said}; see ${paths.logfile}${await logTail(paths.logfile)}`,
    );
  }
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if ((await runningServer(paths)) !== null) return;
    if (Date.now() > deadline) {
      throw new VfleetError(
        'redis-start',
        `the private redis-server did not answer on ${paths.socket} within ${timeoutMs} ms; see ${paths.logfile}${await logTail(paths.logfile)}`,
        { retryable: true },
      );
    }
    await delay(25);
  }
}

/**
 * Stops the private server of `cwd` (`vfleet down`): SHUTDOWN, which flushes and fsyncs the AOF
 * first, then waits for the process to exit and removes its socket and pidfile. Idempotent.
 */
export async function stopEmbeddedRedis(
  cwd: string,
  options: {
    readonly debug?: (message: string) => void;
    readonly timeoutMs?: number;
    /** Stop even while an apply holds a fleet lock on it. */
    readonly force?: boolean;
  } = {},
): Promise<StopOutcome> {
  const debug = options.debug ?? noDebug;
  const paths = embeddedRedisPaths(cwd);
  if (!existsSync(paths.dir)) return { stopped: false, paths };
  return withFileLock(
    paths.lockfile,
    { ...LOCK, purpose: 'stopping the private redis-server' },
    async () => {
      if (!options.force) await refuseWhileLocked(paths.socket);
      return stopLocked(paths, options.timeoutMs ?? STOP_TIMEOUT_MS, debug);
    },
  );
}

/**
 * An apply (or anything else that holds a fleet lock) is writing through this server: stopping
 * it would leave that apply without its state halfway. A lock whose holder ran on this machine
 * and is gone (killed) does not count; one from another machine does, until its TTL runs out.
 */
async function refuseWhileLocked(socket: string): Promise<void> {
  if (!(await answers(socket))) return;
  const redis = new Redis({ path: socket, lazyConnect: true, retryStrategy: () => null });
  redis.on('error', () => undefined); // a failure to look is answered below: nothing refuses
  let held: Awaited<ReturnType<typeof FleetState.heldLocks>> = [];
  try {
    await redis.connect();
    held = await within(PROBE_TIMEOUT_MS * 5, FleetState.heldLocks(redis), []);
  } catch {
    held = [];
  } finally {
    redis.disconnect();
  }
  const live = held.filter(
    ({ holder }) => holder.host !== hostname() || isProcessAlive(holder.pid),
  );
  const first = live[0];
  if (first === undefined) return;
  const h = first.holder;
  throw new VfleetError(
    'fleet-locked',
    `not stopping the private redis-server: apply ${h.id} (pid ${h.pid} on ${h.host}, since ${new Date(h.since).toISOString()}) holds fleet ${first.fleet}'s lock${live.length > 1 ? ` (and ${live.length - 1} more)` : ''}. Wait for it to finish, or stop it; vfleet down --force stops the server anyway (that apply then fails, and the next apply resumes)`,
  );
}

async function stopLocked(
  paths: EmbeddedRedisPaths,
  timeoutMs: number,
  debug: (message: string) => void,
): Promise<StopOutcome> {
  const pid = await readPid(paths.pidfile);
  const alive = pid !== null && isProcessAlive(pid);
  let stopped = false;
  if (await answers(paths.socket)) {
    debug(`sending SHUTDOWN on ${paths.socket}`);
    // Success closes the connection without a reply; an error reply says why it refused.
    const reply = await inlineCommand(paths.socket, 'SHUTDOWN', timeoutMs);
    if (reply?.startsWith('-')) {
      throw new VfleetError(
        'redis-stop',
        `the private redis-server refused to shut down: ${reply.slice(1)}; see ${paths.logfile}`,
      );
    }
    stopped = true;
  } else if (pid !== null && alive && isRedisServerProcess(pid)) {
    // Alive but not answering (hung, or still binding): SIGTERM is its graceful shutdown too.
    debug(`redis-server ${pid} does not answer on ${paths.socket}; sending SIGTERM`);
    process.kill(pid, 'SIGTERM');
    stopped = true;
  }
  if (stopped) {
    const deadline = Date.now() + timeoutMs;
    // Without a pidfile (removed by hand), the socket going quiet is the only sign left.
    while (pid !== null ? isProcessAlive(pid) : await answers(paths.socket)) {
      if (Date.now() > deadline) {
        throw new VfleetError(
          'redis-stop',
          `redis-server ${pid} did not exit within ${timeoutMs} ms of SHUTDOWN; see ${paths.logfile}`,
        );
      }
      await delay(25);
    }
  }
  await rm(paths.pidfile, { force: true });
  await rm(paths.socket, { force: true });
  return stopped ? { stopped: true, pid, paths } : { stopped: false, paths };
}
