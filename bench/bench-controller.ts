// What the controller benchmarks (bench/failover.ts, bench/reconcile.ts) share: the vfleet CLI
// run as a user runs it — one `vfleet plan` timed, the baseline their ratios are taken against —
// and `vfleet controller --json` in a child process, its events gathered from its standard output
// as they come.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const bin = fileURLToPath(new URL('../../bin/vfleet.js', import.meta.url));

/** How long one `vfleet plan -f fleet.yaml` in `cwd` takes, in ms (throws if it fails). */
export function timePlan(cwd: string, env: NodeJS.ProcessEnv): number {
  const started = performance.now();
  const planned = spawnSync(process.execPath, [bin, 'plan', '-f', 'fleet.yaml'], {
    cwd,
    env,
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
  });
  const ms = performance.now() - started;
  if (planned.status !== 0) throw new Error(`vfleet plan failed: ${planned.stderr}`);
  return ms;
}

export interface BenchEvent {
  readonly at: number;
  readonly type: string;
  readonly host?: string;
  readonly instance?: string;
  readonly [field: string]: unknown;
}

export interface BenchController {
  readonly child: ChildProcess;
  /** Every JSON line it printed so far (its events, and `http-listening`). */
  readonly events: BenchEvent[];
  /** SIGTERM, and its exit waited for. */
  stop(): Promise<void>;
}

/** `vfleet controller <args> --json` in `cwd`; its standard error goes to ours. */
export function spawnController(
  args: readonly string[],
  cwd: string,
  env: NodeJS.ProcessEnv,
): BenchController {
  const child = spawn(process.execPath, [bin, 'controller', ...args, '--json'], {
    cwd,
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const events: BenchEvent[] = [];
  let buffered = '';
  child.stdout?.on('data', (d) => {
    buffered += d;
    let nl = buffered.indexOf('\n');
    while (nl >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      try {
        events.push(JSON.parse(line) as BenchEvent);
        if (process.env.BENCH_VERBOSE) console.error(line.slice(0, 300));
      } catch {
        // not an event
      }
      nl = buffered.indexOf('\n');
    }
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    child,
    events,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}
