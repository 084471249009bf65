// What the tests of REDIS_URL's Cluster and Sentinel forms share (redis-cluster-cli,
// redis-sentinel-cli): the canary password and where it must not be, the converged plan, and
// the main job — apply, then a converged plan, then status — run through a form, and over TLS.
import assert from 'node:assert/strict';
import { vfleet } from './vfleet-cli.js';

export const CANARY = 'forms-Canary/5e7b+q';
export const leaks = (text: string) =>
  [CANARY, encodeURIComponent(CANARY)].filter((form) => text.includes(form));
export const CONVERGED = /Plan: 0 to create, 0 to move, 0 to update, 0 to patch, 0 to destroy\./;

/** Runs vfleet with `url`, keeping what it printed for the canary check. */
export function runner(cwd: () => string, url: () => string, outputs: string[]) {
  return (args: string[]) => {
    const run = vfleet(args, cwd(), { REDIS_URL: url() });
    outputs.push(`${args.join(' ')}\n${run.stdout}${run.stderr}`);
    return run;
  };
}

/** The main job: apply, then a converged plan, then status naming the URL without its password. */
export function mainJob(run: ReturnType<typeof runner>, shown: RegExp): void {
  const apply = run(['apply', '--auto-approve']);
  assert.equal(apply.code, 0, apply.stdout + apply.stderr);
  assert.match(apply.stdout, /Apply complete: 32 actions done\./);
  const plan = run(['plan']);
  assert.equal(plan.code, 0, plan.stderr);
  assert.match(plan.stdout, CONVERGED);
  const status = run(['status']);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, shown);
  assert.match(status.stdout, /No drift: the fleet matches the spec\./);
}

/**
 * The main job over TLS (`env`: the rediss URL and what makes its authority trusted): apply,
 * a converged plan, status naming the URL without its password (`shown`); the canary in none of
 * apply's and status's output. Returns those two runs.
 */
export function tlsMainJob(cwd: string, env: NodeJS.ProcessEnv, shown: RegExp) {
  const apply = vfleet(['apply', '--auto-approve'], cwd, env);
  assert.equal(apply.code, 0, apply.stdout + apply.stderr);
  assert.match(apply.stdout, /Apply complete: 32 actions done\./);
  assert.match(vfleet(['plan'], cwd, env).stdout, CONVERGED);
  const status = vfleet(['status'], cwd, env);
  assert.match(status.stdout, shown);
  for (const run of [apply, status]) assert.deepEqual(leaks(run.stdout + run.stderr), []);
  return [apply, status];
}
