// The private redis-server of a folder (README.md, "The private redis-server"): vfleet's Redis when
// REDIS_URL is not set, its files in `.vfleet/redis/`: a unix socket and no TCP port (nothing
// else on the machine can reach it by accident), AOF fsynced every second (a crash loses at most
// a second of state), and `noeviction` (Redis must refuse a write rather than silently drop a
// lock, a job or an instance record). It is a daemon, so it outlives the command that started it
// and the next command reuses it (connect-redis.ts connects to it); `vfleet down` stops it.
// Starting and stopping hold the folder's start lock, and read the pidfile and probe the socket
// (raw-redis.ts) to tell a running server from a stale file.
import { spawn } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { delimiter, join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { VfleetError } from '../model/errors.js';
import { withFileLock } from './file-lock.js';
import { FleetState } from './fleet-state.js';
import { isProcessAlive, isRedisServerProcess } from './process-alive.js';
import { answers, inlineCommand, PROBE_TIMEOUT_MS } from './raw-redis.js';
import { RedisClients } from './redis-clients.js';
import { type EmbeddedRedisPaths, embeddedRedisPaths } from './redis-paths.js';
import { within } from './within.js';

export { type EmbeddedRedisPaths, embeddedRedisPaths };

export type StopOutcome =
  | { readonly stopped: true; readonly pid: number | null; readonly paths: EmbeddedRedisPaths }
  | { readonly stopped: false; readonly paths: EmbeddedRedisPaths };

const DEFAULT_START_TIMEOUT_MS = 5_000;
const STOP_TIMEOUT_MS = 10_000;
const LOCK = { timeoutMs: 15_000, staleMs: 30_000 };
const FALLBACK_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

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

/** The pid of the folder's server when its pidfile names a live process and its socket answers. */
async function runningServer(paths: EmbeddedRedisPaths): Promise<number | null> {
  const pid = await readPid(paths.pidfile);
  if (pid === null || !isProcessAlive(pid)) return null;
  return (await answers(paths.socket)) ? pid : null;
}

/** Whether the private server of `cwd` runs now (its pidfile names a live process that answers). */
export async function embeddedRedisRunning(cwd: string): Promise<boolean> {
  return (await runningServer(embeddedRedisPaths(cwd))) !== null;
}

/**
 * The private server of `cwd`, running: reused when its pidfile names a live process and its
 * socket answers, else started under the folder's start lock. Returns where its files are.
 */
export async function ensureEmbeddedRedis(
  cwd: string,
  env: NodeJS.ProcessEnv,
  options: { readonly debug: (message: string) => void; readonly startTimeoutMs?: number },
): Promise<EmbeddedRedisPaths> {
  const { debug } = options;
  const paths = embeddedRedisPaths(cwd);
  if (paths.socketInTmp) {
    debug(
      `${join(paths.dir, 'redis.sock')} is longer than a unix socket path may be; the private redis-server listens on ${paths.socket} instead`,
    );
  }
  const running = await runningServer(paths);
  if (running !== null) {
    debug(`reusing the private redis-server (pid ${running}) on ${paths.socket}`);
    return paths;
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
      await startServer(paths, env, options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS, debug);
    },
  );
  return paths;
}

/**
 * The private server of `cwd` started again, from its AOF, when its process is gone (SIGKILLed,
 * the OOM killer): vfleet started it as a daemon and is its only supervisor (docs/redis.md,
 * "Faults"). A crash leaves its pidfile naming a dead process; a shutdown (`vfleet down`, a
 * SHUTDOWN) removes it, and a server stopped on purpose is not started again. A process that is
 * alive and does not answer (stopped, busy, loading) is never replaced: a second server on the
 * same files would corrupt them. True when it was started.
 */
export async function reviveEmbeddedRedis(
  cwd: string,
  env: NodeJS.ProcessEnv,
  debug: (message: string) => void,
): Promise<boolean> {
  const paths = embeddedRedisPaths(cwd);
  const pid = await readPid(paths.pidfile);
  if (pid === null || isProcessAlive(pid)) return false;
  debug(`the private redis-server (pid ${pid}) is gone; starting it again from its AOF`);
  await ensureEmbeddedRedis(cwd, env, { debug });
  return true;
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
  const debug = options.debug ?? (() => undefined);
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
  // A failure to look is answered below: nothing refuses.
  const redis = new RedisClients({ path: socket }, { shown: `unix://${socket}` }).open({
    lazyConnect: true,
  });
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
