// The vfleet CLI as the apply tests run it: a folder holding the root fleet.yaml, the command
// run to its end in a child process (blocking, or not: runVfleet), and a redis-server for
// REDIS_URL. Shared by the apply test files, which were split so that the runner can run them
// side by side, and by the real-host CLI tests.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, before } from 'node:test';
import { fromRoot } from './paths.js';
import { startRedisServer, type TestRedisServer } from './redis.js';

export const bin = fromRoot('bin', 'vfleet.js');

/** A temporary folder with the root fleet.yaml and the inventory it reads. */
export function workdir(): string {
  const dir = mkdtempSync(`${tmpdir()}/vfleet-apply-`);
  copyFileSync(fromRoot('fleet.yaml'), `${dir}/fleet.yaml`);
  // fleet.yaml takes the debian-12 image's packages from this inventory, relative to the spec
  cpSync(fromRoot('examples', 'inventories'), `${dir}/examples/inventories`, { recursive: true });
  return dir;
}

export function vfleet(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}) {
  const result = spawnSync(process.execPath, [bin, ...args], {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, VFLEET_EMBEDDED_BOOT_MS: '0', ...env },
    timeout: 60_000,
    // status --json carries every instance's package inventory: over 1 MiB at a few hundred
    maxBuffer: 64 * 1024 * 1024,
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

export const running = (cwd: string, env: NodeJS.ProcessEnv) => {
  const status = JSON.parse(vfleet(['status', '--json'], cwd, env).stdout);
  return status.instances as Array<{ instance: string; status: string; host: string }>;
};

export interface ApplyRedis {
  /** Set by the before() hook. */
  server: TestRedisServer;
  /** What points vfleet at the server. */
  env: NodeJS.ProcessEnv;
  /** An empty server and a new folder: one test's fleet. */
  fresh(): Promise<string>;
}

/** A redis-server of the describe's own, started in before() and stopped in after(). */
export function useApplyRedis(): ApplyRedis {
  const f = {
    env: {},
    async fresh() {
      await f.server.client().flushall();
      return workdir();
    },
  } as ApplyRedis;
  before(async () => {
    f.server = await startRedisServer({ args: ['--maxmemory-policy', 'noeviction'], tcp: true });
    f.env = { REDIS_URL: `${f.server.url}/0` };
  });
  after(async () => f.server?.stop());
  return f;
}

/** A vfleet command running in a child process, its output gathered as it comes. */
export interface RunningVfleet {
  readonly child: ChildProcess;
  /** Resolves with the exit code (null: killed by a signal). */
  readonly exited: Promise<number | null>;
  /** Standard output and error so far. */
  output(): string;
}

/**
 * Starts `vfleet args` in `cwd` with `env` (over this process's), recorded in `children` so
 * that an after() hook can SIGKILL what a failed test left running. `prefix` runs it under
 * another command that execs it (`ip netns exec NS`: the child's pid is still vfleet's).
 */
export function spawnVfleet(
  args: readonly string[],
  cwd: string,
  env: NodeJS.ProcessEnv,
  children: ChildProcess[],
  prefix: readonly string[] = [],
): RunningVfleet {
  const [command, ...before] = [...prefix, process.execPath];
  const child = spawn(command as string, [...before, bin, ...args], {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (d) => {
    output += d;
  });
  child.stderr?.on('data', (d) => {
    output += d;
  });
  children.push(child);
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  );
  return { child, exited, output: () => output };
}

/** What a vfleet command run to its end printed, and its exit code (null: killed by a signal). */
export interface VfleetRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * `vfleet args` in `cwd` with `env` (over this process's) without blocking this process (a
 * sampler or a watcher keeps running), SIGKILLed past `deadlineMs` — a bound for a loaded
 * machine, not a timing test. `whileRunning` runs beside it and is awaited before the result;
 * its `done()` says whether the command has exited.
 */
export function runVfleet(
  args: readonly string[],
  cwd: string,
  env: NodeJS.ProcessEnv,
  deadlineMs: number,
  whileRunning?: (done: () => boolean) => Promise<void>,
): Promise<VfleetRun> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], {
      cwd,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let exited = false;
    child.stdout.on('data', (c) => {
      stdout += c;
    });
    child.stderr.on('data', (c) => {
      stderr += c;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), deadlineMs);
    const watching = whileRunning?.(() => exited) ?? Promise.resolve();
    child.once('close', async (code) => {
      exited = true;
      clearTimeout(timer);
      await watching;
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * Polls `probe` until it gives a value, every `everyMs` (200 ms), at most `deadlineMs` — a bound
 * for a loaded machine, never a timing assertion; past it, an error naming `what`.
 */
export async function pollUntil<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  deadlineMs = 90_000,
  everyMs = 200,
): Promise<T> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error(`not within ${deadlineMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/** The fleet's last 1,000 events, as `vfleet events --json` prints them. */
export function fleetEvents<T = Record<string, unknown>>(cwd: string, env: NodeJS.ProcessEnv): T[] {
  const r = vfleet(['events', '--json', '--last', '1000'], cwd, env);
  if (r.code !== 0) throw new Error(`vfleet events exited ${r.code}: ${r.stderr}`);
  return r.stdout
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as T);
}

/** What the controller tests read of `vfleet status --json` (the contract names). */
export interface StatusJson {
  hosts: Array<{
    name: string;
    health: string;
    running: string[] | null;
    leaseAgeMs: number | null;
  }>;
  instances: Array<{
    instance: string;
    host: string;
    status: string;
    generation: number;
    failoverHost: string | null;
    replication?: {
      target: string;
      consistentAt: number | null;
      rpoSeconds: number | null;
      state: string;
      lastKind: 'full' | 'incremental' | null;
      lastBytes: number;
      fullReason?: string;
    };
  }>;
}
