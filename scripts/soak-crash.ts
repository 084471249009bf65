// npm run soak:crash — crash vfleet the way an unlucky operator would, and check that the next
// apply always converges. A seeded run of rounds over a generated fleet on the embedded default
// (a private redis-server in the work folder): each round plans a change (the whole fleet, or some
// groups scaled down), starts `vfleet apply`, and at a random point of it SIGKILLs one of
//   redis  — the private redis-server (vfleet starts it again from its AOF and the apply
//            resumes by itself: docs/redis.md, "Faults"),
//   apply  — the apply itself (its fleet lock and its jobs are left behind),
//   worker — one of two standalone `vfleet worker` processes serving an --external-workers
//            apply (a new worker is started; the dead one's jobs are taken over).
// Then one more `vfleet apply` must exit 0, `vfleet plan` must have nothing left to do, every
// instance of the spec must exist exactly once on the hosts (and nothing else), and no process may
// have printed a stack trace. Not part of `npm test`; a three-round version of it is
// (test/soak/crash-soak.test.ts).
//
//   node dist/scripts/soak-crash.js [--rounds 20] [--seed 1] [--hosts 110] [--instances 5000]
//
// 110 hosts rather than the 100 of the report that found the crash: with 100, 55 of the 5,000
// generated instances fit nowhere, so every apply exits 1 and exit 0 could not mean converged.
// Other seeds generate other fleets: choose --hosts so that the seed's fleet places whole (seed
// 2 leaves 62 unplaced at 110 hosts; `vfleet schedule` on the generated spec says).
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { Document } from 'yaml';
import { generateFleetDocument, mulberry32 } from '../examples/generate.js';
import { replicaName } from '../src/model/fleet.js';
import type { FleetDocument } from '../src/model/fleet-spec.generated.js';
import { embeddedRedisPaths } from '../src/state/redis-server.js';

export type FaultKind = 'redis' | 'apply' | 'worker';
export const FAULT_KINDS: readonly FaultKind[] = ['redis', 'apply', 'worker'];

export interface SoakOptions {
  readonly seed: number;
  readonly rounds: number;
  readonly hosts: number;
  readonly instances: number;
  /** The fault of each round in turn (cycled); default: drawn from the seed. */
  readonly faults?: readonly FaultKind[];
  readonly log?: (line: string) => void;
  /** How long a stalled job's lock lasts: how soon a dead worker's jobs are taken over. */
  readonly workerLockMs?: number;
}

export interface RoundResult {
  readonly round: number;
  readonly fault: FaultKind;
  /** Whether the fault landed while the apply was running (it may finish first). */
  readonly hit: boolean;
  readonly faultedExit: number | null;
  readonly faultedFirstLine: string;
  readonly recoverMs: number;
  readonly instances: number;
  readonly doubled: number;
  readonly missing: number;
  readonly extra: number;
  readonly problems: readonly string[];
}

const BIN = fileURLToPath(new URL('../../bin/vfleet.js', import.meta.url));
/** Caps what is kept of one process's output; what is dropped is still scanned. */
const KEEP_BYTES = 4 * 1024 * 1024;
const STACK_TRACE =
  /^\s+at .+(:\d+:\d+\)?|\(native\)|\(<anonymous>\))$|internal error|Unhandled|uncaught/im;

interface Run {
  readonly child: ChildProcess;
  readonly done: Promise<number | null>;
  output(): string;
  stackTraces(): number;
}

/** A vfleet process with its output captured (bounded) and scanned for stack traces. */
function vfleet(args: readonly string[], cwd: string, env: NodeJS.ProcessEnv): Run {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let kept = '';
  let traces = 0;
  const started = Date.now();
  let partial = false; // the last chunk ended mid-line
  const take = (chunk: Buffer) => {
    const text = chunk.toString('utf8');
    traces += text.split('\n').filter((l) => STACK_TRACE.test(l)).length;
    if (kept.length >= KEEP_BYTES) return;
    // Each line stamped with when it came, so a slow round shows where the time went.
    const stamp = `[+${((Date.now() - started) / 1000).toFixed(1)}s] `;
    const stamped = text.replace(/\n(?=.)/g, `\n${stamp}`);
    kept += (partial ? '' : stamp) + stamped;
    partial = !text.endsWith('\n');
    kept = kept.slice(0, KEEP_BYTES);
  };
  child.stdout?.on('data', take);
  child.stderr?.on('data', take);
  const done = new Promise<number | null>((resolve) =>
    child.once('close', (code) => resolve(code)),
  );
  return { child, done, output: () => kept, stackTraces: () => traces };
}

/** The process's exit code, or null when it did not end within `ms` (it is killed then). */
async function ended(run: Run, ms: number): Promise<number | null | 'hung'> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<'hung'>((resolve) => {
    timer = setTimeout(() => resolve('hung'), ms);
  });
  const result = await Promise.race([run.done, hung]);
  clearTimeout(timer);
  if (result === 'hung') run.child.kill('SIGKILL');
  return result;
}

/** The whole fleet, or the same with some groups scaled down (to half, or to none). */
function variant(base: FleetDocument, scaled: boolean, rnd: () => number): FleetDocument {
  if (!scaled) return base;
  return {
    ...base,
    spec: {
      ...base.spec,
      instances: (base.spec.instances ?? []).map((g) => {
        const r = rnd();
        const replicas = g.replicas ?? 1;
        return r < 0.25 ? { ...g, replicas: 0 } : r < 0.6 ? { ...g, replicas: replicas >> 1 } : g;
      }),
    },
  };
}

const firstLine = (text: string) =>
  text
    .split('\n')
    .map((l) => l.replace(/^\[\+[0-9.]+s\] /, ''))
    .find((l) => /vfleet: |Apply /.test(l))
    ?.slice(0, 200) ?? '';

export async function runCrashSoak(options: SoakOptions): Promise<RoundResult[]> {
  const log = options.log ?? (() => undefined);
  const rnd = mulberry32(options.seed);
  const dir = mkdtempSync(`${tmpdir()}/vfleet-soak-`);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    REDIS_URL: undefined,
    // A little latency per instance, so that a fault lands while jobs are in flight.
    VFLEET_EMBEDDED_BOOT_MS: '2',
    VFLEET_WORKER_LOCK_MS: String(options.workerLockMs ?? 10_000),
  };
  delete env.REDIS_URL;
  const base = generateFleetDocument({
    hosts: options.hosts,
    instances: options.instances,
    seed: options.seed,
  });
  const fleet = base.metadata.name;
  const results: RoundResult[] = [];
  const workers: Run[] = [];
  // Interrupted (Ctrl-C, a CI timeout): stop what the soak started, by pid, before going.
  const interrupted = () => {
    for (const w of workers) w.child.kill('SIGKILL');
    try {
      process.kill(Number(readFileSync(embeddedRedisPaths(dir).pidfile, 'utf8').trim()), 'SIGKILL');
    } catch {
      // no server running
    }
    rmSync(dir, { recursive: true, force: true });
    process.exit(130);
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  try {
    for (let round = 1; round <= options.rounds; round++) {
      const fault =
        options.faults?.[(round - 1) % options.faults.length] ??
        (FAULT_KINDS[Math.floor(rnd() * FAULT_KINDS.length)] as FaultKind);
      const spec = variant(base, round % 2 === 0, rnd);
      writeFileSync(`${dir}/fleet.yaml`, new Document(spec).toString());
      const problems: string[] = [];
      const runs: Run[] = [];
      const track = (run: Run) => {
        runs.push(run);
        return run;
      };

      // How much there is to do decides where the fault lands: somewhere in its first 80%.
      const planned = track(vfleet(['plan', '--json'], dir, env));
      const planCode = await ended(planned, 120_000);
      if (planCode !== 0) problems.push(`plan before the round exited ${planCode}`);
      const planText = planned.output().replace(/^\[\+[0-9.]+s\] /gm, '');
      const plan = JSON.parse(planText || '{"actions":[]}') as { actions: unknown[] };
      const paths = embeddedRedisPaths(dir);
      const watch = new Redis({ path: paths.socket, retryStrategy: () => null, lazyConnect: true });
      watch.on('error', () => undefined); // the redis fault kills it on purpose
      await watch.connect();
      const versionKey = `vfleet:{${fleet}}:version`;
      const start = Number((await watch.get(versionKey)) ?? 0);
      const at = start + 1 + Math.floor(rnd() * 0.8 * Math.max(1, plan.actions.length));

      if (fault === 'worker') {
        while (workers.length < 2) workers.push(vfleet(['worker', '--concurrency', '8'], dir, env));
      }
      const apply = track(
        vfleet(
          ['apply', '--auto-approve', ...(fault === 'worker' ? ['--external-workers'] : [])],
          dir,
          env,
        ),
      );
      let exited = false;
      void apply.done.then(() => {
        exited = true;
      });
      let hit = false;
      const deadline = Date.now() + 300_000;
      while (!exited && Date.now() < deadline) {
        const version = Number((await watch.get(versionKey).catch(() => null)) ?? 0);
        if (version >= at) {
          hit = true;
          break;
        }
        await delay(10);
      }
      watch.disconnect();
      const faultAt = Date.now();
      if (hit) {
        if (fault === 'redis') {
          const pid = Number(readFileSync(paths.pidfile, 'utf8').trim());
          process.kill(pid, 'SIGKILL');
        } else if (fault === 'apply') {
          apply.child.kill('SIGKILL');
        } else {
          const victim = workers.shift() as Run;
          victim.child.kill('SIGKILL');
          await victim.done;
          workers.push(vfleet(['worker', '--concurrency', '8'], dir, env));
        }
      }
      const faultedExit = await ended(apply, 300_000);
      if (faultedExit === 'hung') problems.push(`the ${fault}-faulted apply did not end in 300 s`);
      if (fault === 'redis' && hit && faultedExit !== 0) {
        problems.push(
          `after its Redis was killed the apply exited ${faultedExit}, not 0 (resumed)`,
        );
      }
      if (fault === 'worker' && faultedExit !== 0) {
        problems.push(`the apply whose worker died exited ${faultedExit}, not 0`);
      }
      const faultedFirstLine = firstLine(apply.output());

      // The next apply converges: exit 0, nothing left to plan.
      const next = track(vfleet(['apply', '--auto-approve'], dir, env));
      const nextCode = await ended(next, 300_000);
      const recoverMs = Date.now() - faultAt;
      if (nextCode !== 0) {
        problems.push(`the next apply exited ${nextCode}: ${firstLine(next.output())}`);
      }
      const check = track(vfleet(['plan', '--detailed-exitcode'], dir, env));
      const checkCode = await ended(check, 120_000);
      if (checkCode !== 0) problems.push(`plan after the next apply exited ${checkCode}`);

      // Every instance of the spec exactly once on the hosts, and nothing else.
      const wanted = new Set(
        (spec.spec.instances ?? []).flatMap((g) =>
          Array.from({ length: g.replicas ?? 1 }, (_, i) => replicaName(g.name, i)),
        ),
      );
      const seen = new Map<string, number>();
      const redis = new Redis({ path: paths.socket, retryStrategy: () => null });
      redis.on('error', () => undefined);
      try {
        for (const h of spec.spec.hosts) {
          const names = await redis.hkeys(`vfleet:{${fleet}}:engine:${h.name}:instances`);
          for (const n of names) seen.set(n, (seen.get(n) ?? 0) + 1);
        }
      } finally {
        redis.disconnect();
      }
      const doubled = [...seen.values()].filter((c) => c > 1).length;
      const missing = [...wanted].filter((n) => !seen.has(n)).length;
      const extra = [...seen.keys()].filter((n) => !wanted.has(n)).length;
      if (doubled + missing + extra > 0) {
        const some = (names: string[]) =>
          names.length > 0 ? ` (${names.slice(0, 5).join(', ')})` : '';
        problems.push(
          `${doubled} doubled${some([...seen].filter(([, c]) => c > 1).map(([n]) => n))}, ` +
            `${missing} missing${some([...wanted].filter((n) => !seen.has(n)))}, ` +
            `${extra} not in the spec${some([...seen.keys()].filter((n) => !wanted.has(n)))}`,
        );
      }
      for (const run of [...runs, ...workers]) {
        if (run.stackTraces() > 0) {
          const line =
            run
              .output()
              .split('\n')
              .find((l) => STACK_TRACE.test(l)) ?? '';
          problems.push(
            `${run.stackTraces()} stack-trace lines, e.g. ${line.trim().slice(0, 160)}`,
          );
        }
      }
      // What each process printed, for whoever has to find out why a round failed or was slow.
      const saved = `${tmpdir()}/vfleet-soak-round-${options.seed}-${round}.log`;
      writeFileSync(
        saved,
        runs.map((r) => `==== ${r.child.spawnargs.slice(2).join(' ')}\n${r.output()}`).join('\n'),
      );
      if (problems.length > 0) problems.push(`output in ${saved}`);
      const result: RoundResult = {
        round,
        fault,
        hit,
        faultedExit: faultedExit === 'hung' ? null : faultedExit,
        faultedFirstLine,
        recoverMs,
        instances: wanted.size,
        doubled,
        missing,
        extra,
        problems,
      };
      results.push(result);
      log(
        `round ${round}/${options.rounds}: ${fault}${hit ? ` killed at version ${at - start} of the round` : ' (the apply finished first)'}; ` +
          `apply exit ${result.faultedExit}${faultedFirstLine ? ` ("${faultedFirstLine}")` : ''}; ` +
          `next apply ${nextCode === 0 ? 'converged' : `exit ${nextCode}`} ${(recoverMs / 1000).toFixed(1)} s after the fault; ` +
          `${wanted.size} instances, ${doubled} doubled, ${missing} missing` +
          (problems.length > 0 ? `\n  PROBLEMS: ${problems.join('; ')}` : ''),
      );
    }
  } finally {
    process.removeListener('SIGINT', interrupted);
    process.removeListener('SIGTERM', interrupted);
    for (const w of workers) w.child.kill('SIGTERM');
    await Promise.all(workers.map((w) => ended(w, 40_000)));
    await ended(vfleet(['down', '--force'], dir, env), 30_000);
    rmSync(dir, { recursive: true, force: true });
  }
  return results;
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      rounds: { type: 'string', default: '20' },
      seed: { type: 'string', default: '1' },
      faults: { type: 'string' },
      hosts: { type: 'string', default: '110' },
      instances: { type: 'string', default: '5000' },
    },
  });
  const n = (v: string | undefined) => Number(v);
  const options = {
    rounds: n(values.rounds),
    seed: n(values.seed),
    hosts: n(values.hosts),
    instances: n(values.instances),
  };
  for (const [k, v] of Object.entries(options)) {
    if (!Number.isSafeInteger(v) || v < 1) {
      process.stderr.write(`soak-crash: --${k} takes a whole number ≥ 1\n`);
      return 2;
    }
  }
  process.stdout.write(
    `crash soak: ${options.rounds} rounds, seed ${options.seed}, ${options.hosts} hosts, ${options.instances} instances\n`,
  );
  const started = Date.now();
  const faults = values.faults?.split(',') as FaultKind[] | undefined;
  if (faults?.some((f) => !FAULT_KINDS.includes(f))) {
    process.stderr.write(`soak-crash: --faults takes a list of ${FAULT_KINDS.join(', ')}\n`);
    return 2;
  }
  const results = await runCrashSoak({
    ...options,
    ...(faults ? { faults } : {}),
    log: (l) => process.stdout.write(`${l}\n`),
  });
  const failed = results.filter((r) => r.problems.length > 0);
  const by = (k: FaultKind) => results.filter((r) => r.fault === k);
  const hits = results.filter((r) => r.hit).length;
  process.stdout.write(
    `\n${results.length} rounds (${FAULT_KINDS.map((k) => `${by(k).length} ${k}`).join(', ')}; ${hits} faults landed mid-apply) in ${((Date.now() - started) / 1000).toFixed(0)} s: ` +
      `${results.length - failed.length} converged on the next apply, ${failed.length} did not; ` +
      `${results.reduce((s, r) => s + r.doubled, 0)} doubled, ${results.reduce((s, r) => s + r.missing, 0)} missing.\n` +
      FAULT_KINDS.map((k) => {
        const times = by(k)
          .map((r) => r.recoverMs / 1000)
          .sort((a, b) => a - b);
        return times.length === 0
          ? ''
          : `  ${k}: fault → converged, median ${times[times.length >> 1]?.toFixed(1)} s, max ${times[times.length - 1]?.toFixed(1)} s\n`;
      }).join(''),
  );
  return failed.length === 0 ? 0 : 1;
}

if (process.argv[1] !== undefined && process.argv[1] === fileURLToPath(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2));
}
