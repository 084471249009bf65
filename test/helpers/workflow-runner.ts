// A small stand-in for the GitHub Actions runner, enough to run vfleet's shipped workflow
// (.github/workflows/vfleet.yml) in a scratch repository: each `run:` step as GitHub runs it
// (`bash --noprofile --norc -eo pipefail`, in the workspace, with GITHUB_STEP_SUMMARY, GITHUB_ENV,
// GITHUB_PATH and GITHUB_OUTPUT files of its own), `${{ }}` expressions of env and inputs resolved
// from a context the test gives, workflow commands (`::error …::`) collected from the output.
//
// What it cannot run it refuses, so the workflow cannot drift past it unnoticed: a `${{ }}` in a
// script, a step condition other than always(), a job condition other than a test of the event
// name, an action it does not know. Steps that need GitHub or the network carry a marker line
// (`# ci-test: skip — why`) and are skipped, with the reason recorded; actions (`uses:`) are not
// run, but what they consume — the files an artifact upload or a JUnit report names — must exist.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse } from 'yaml';

export interface WorkflowStep {
  readonly name?: string;
  readonly id?: string;
  readonly if?: string;
  readonly run?: string;
  readonly uses?: string;
  readonly shell?: string;
  readonly 'working-directory'?: string;
  readonly env?: Readonly<Record<string, string | number | boolean>>;
  readonly with?: Readonly<Record<string, string | number | boolean>>;
}

export interface WorkflowJob {
  readonly if?: string;
  readonly env?: Readonly<Record<string, string | number | boolean>>;
  readonly steps: readonly WorkflowStep[];
}

export interface Workflow {
  readonly on: Readonly<Record<string, unknown>>;
  readonly env?: Readonly<Record<string, string | number | boolean>>;
  readonly jobs: Readonly<Record<string, WorkflowJob>>;
}

export function loadWorkflow(file: string): Workflow {
  return parse(readFileSync(file, 'utf8')) as Workflow;
}

/** The marker a step that needs GitHub or the network carries, with the reason after it. */
const SKIP_MARKER = /^\s*#\s*ci-test:\s*skip\b\s*[—:-]?\s*(.*)$/m;

/** Why a run step is skipped, or undefined when it runs. */
export function skipReason(step: WorkflowStep): string | undefined {
  const m = step.run === undefined ? null : SKIP_MARKER.exec(step.run);
  return m ? m[1]?.trim() || '(no reason given)' : undefined;
}

export const stepName = (step: WorkflowStep, index: number) =>
  step.name ?? step.id ?? step.uses ?? step.run?.split('\n')[0] ?? `step ${index + 1}`;

/**
 * Whether a job runs on `event`. Only a test of the event name is understood
 * (`github.event_name == 'x' || …`); anything else is a question this runner cannot answer.
 */
export function jobRunsOn(job: WorkflowJob, event: string): boolean {
  if (job.if === undefined) return true;
  const events = job.if.split('||').map((part) => {
    const m = /^\s*github\.event_name\s*==\s*'([\w-]+)'\s*$/.exec(part);
    if (!m) throw new Error(`job condition not understood by the test's runner: ${job.if}`);
    return m[1];
  });
  return events.includes(event);
}

/** The values `${{ a.b.c }}` may name: the test's secrets, github, runner, vars. */
export type ExpressionContext = Readonly<Record<string, unknown>>;

/**
 * `${{ path.to.value }}` replaced from the context, or `${{ a.b || c.d }}`: the first that is not
 * empty, as GitHub reads `||`. Any other expression is refused, and so is a path the context
 * does not hold (the test must say what a secret is, even empty).
 */
export function expand(value: string | number | boolean, context: ExpressionContext): string {
  return String(value).replace(/\$\{\{\s*(.*?)\s*\}\}/g, (_, expression: string) => {
    const values = expression.split('||').map((part) => {
      const path = part.trim();
      if (!/^[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*$/.test(path))
        throw new Error(`expression not understood by the test's runner: \${{ ${expression} }}`);
      let v: unknown = context;
      for (const key of path.split('.')) v = (v as Record<string, unknown> | undefined)?.[key];
      if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean')
        throw new Error(`the test gives no value for ${path} in \${{ ${expression} }}`);
      return String(v);
    });
    return values.find((v) => v !== '' && v !== 'false') ?? (values[values.length - 1] as string);
  });
}

export interface Annotation {
  readonly command: 'error' | 'warning' | 'notice';
  readonly properties: string;
  readonly message: string;
}

export interface StepResult {
  readonly name: string;
  readonly status: 'passed' | 'failed' | 'skipped' | 'not-run';
  /** skipped: the marker's reason, or "action …"; failed: the exit code or the problem. */
  readonly why?: string;
  readonly stdout: string;
  readonly stderr: string;
  readonly annotations: readonly Annotation[];
}

export interface JobRun {
  readonly job: string;
  readonly ok: boolean;
  readonly steps: readonly StepResult[];
  /** Every step's summary, in order, as GitHub shows the job's summary. */
  readonly summary: string;
  /** The problems found, one line each (a failed step with its output's tail). */
  readonly problems: readonly string[];
}

export interface RunOptions {
  /** The checkout: a scratch git repository. */
  readonly workspace: string;
  /** A folder of the test's for the runner's files ($RUNNER_TEMP). */
  readonly runnerTemp: string;
  readonly event: string;
  /** What `${{ }}` may name; `github.event_name` and `runner.temp` are added. */
  readonly context: ExpressionContext;
  /** The machine's environment the steps start from (PATH, HOME…), before the workflow's. */
  readonly baseEnv: NodeJS.ProcessEnv;
  /** A step's time limit: a bound for a loaded machine, not a timing assertion. */
  readonly stepTimeoutMs?: number;
}

/** GitHub's limit on one step's summary. */
export const STEP_SUMMARY_LIMIT = 1024 * 1024;

const ANNOTATION = /^::(error|warning|notice)( [^:]*)?::(.*)$/;

/** Files GITHUB_ENV sets: `NAME=value` lines, or `NAME<<DELIMITER` … `DELIMITER`. */
function readEnvFile(file: string, into: Record<string, string>): void {
  const lines = readFileSync(file, 'utf8').split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    const heredoc = /^([^=<]+)<<(.+)$/.exec(line);
    if (heredoc) {
      const value: string[] = [];
      for (i++; i < lines.length && lines[i] !== heredoc[2]; i++) value.push(lines[i] as string);
      into[heredoc[1] as string] = value.join('\n');
    } else if (line.includes('=')) {
      into[line.slice(0, line.indexOf('='))] = line.slice(line.indexOf('=') + 1);
    }
  }
}

/** What an action consumes that the steps before it must have made, checked after them. */
function checkAction(step: WorkflowStep, inputs: Record<string, string>, workspace: string) {
  const action = (step.uses ?? '').replace(/@.*$/, '');
  const mustExist = (paths: string, what: string): string[] =>
    paths
      .split('\n')
      .map((p) => p.trim())
      .filter((p) => p !== '')
      .flatMap((p) => {
        const full = resolve(workspace, p);
        if (!existsSync(full)) return [`${what} ${p} does not exist`];
        if (statSync(full).isDirectory() && readdirSync(full).length === 0)
          return [`${what} ${p} is empty`];
        return [];
      });
  switch (action) {
    case 'actions/checkout': // the scratch repository is the checkout
    case 'actions/setup-node': // this process's node runs the steps
      return [];
    case 'actions/upload-artifact':
      return mustExist(inputs.path ?? '', 'the artifact path');
    case 'mikepenz/action-junit-report':
      return mustExist(inputs.report_paths ?? '', 'the JUnit report').concat(
        (inputs.report_paths ?? '')
          .split('\n')
          .filter((p) => p.trim() !== '' && existsSync(resolve(workspace, p.trim())))
          .flatMap((p) =>
            /<testsuites?[\s>]/.test(readFileSync(resolve(workspace, p.trim()), 'utf8'))
              ? []
              : [`the JUnit report ${p} holds no <testsuites>`],
          ),
      );
    default:
      return [
        `the test's runner does not know the action ${step.uses}: say in test/helpers/workflow-runner.ts what it needs`,
      ];
  }
}

/** Runs one job of the workflow the way GitHub would, on `options.event`. */
export function runJob(workflow: Workflow, jobId: string, options: RunOptions): JobRun {
  const job = workflow.jobs[jobId];
  if (!job) throw new Error(`no job ${jobId}`);
  const context = {
    ...options.context,
    github: { ...(options.context.github as object), event_name: options.event },
    runner: { ...(options.context.runner as object), temp: options.runnerTemp },
  };
  const commands = `${options.runnerTemp}/_runner_file_commands`;
  mkdirSync(commands, { recursive: true });
  const fromWorkflow: Record<string, string> = {};
  for (const env of [workflow.env, job.env])
    for (const [k, v] of Object.entries(env ?? {})) fromWorkflow[k] = expand(v, context);
  const setByEnvFile: Record<string, string> = {};
  const paths: string[] = [];
  const steps: StepResult[] = [];
  const problems: string[] = [];
  let summary = '';
  let failed = false;
  job.steps.forEach((step, index) => {
    const name = stepName(step, index);
    const result = (
      r: Omit<StepResult, 'name' | 'stdout' | 'stderr' | 'annotations'> & Partial<StepResult>,
    ) => steps.push({ name, stdout: '', stderr: '', annotations: [], ...r });
    if (step.if !== undefined && !/^\s*(\$\{\{\s*)?always\(\)(\s*\}\})?\s*$/.test(step.if)) {
      problems.push(
        `${jobId} / ${name}: step condition not understood by the test's runner: ${step.if}`,
      );
      result({ status: 'failed', why: `if: ${step.if}` });
      failed = true;
      return;
    }
    if (failed && step.if === undefined) {
      result({ status: 'not-run', why: 'an earlier step failed' });
      return;
    }
    if (step.uses !== undefined) {
      const inputs: Record<string, string> = {};
      for (const [k, v] of Object.entries(step.with ?? {})) inputs[k] = expand(v, context);
      const missing = checkAction(step, inputs, options.workspace);
      for (const m of missing) problems.push(`${jobId} / ${name}: ${m}`);
      result({ status: missing.length > 0 ? 'failed' : 'skipped', why: `action ${step.uses}` });
      failed ||= missing.length > 0;
      return;
    }
    const script = step.run ?? '';
    if (script.includes('${{')) {
      problems.push(`${jobId} / ${name}: a \${{ }} expression inside run: (pass it through env:)`);
      result({ status: 'failed', why: 'expression in the script' });
      failed = true;
      return;
    }
    if (step.shell !== undefined && step.shell !== 'bash') {
      problems.push(`${jobId} / ${name}: shell ${step.shell}: the test's runner runs bash only`);
      result({ status: 'failed', why: `shell ${step.shell}` });
      failed = true;
      return;
    }
    const skip = skipReason(step);
    if (skip !== undefined) {
      result({ status: 'skipped', why: skip });
      return;
    }
    const files = {
      GITHUB_STEP_SUMMARY: `${commands}/step_summary_${index}`,
      GITHUB_ENV: `${commands}/set_env_${index}`,
      GITHUB_PATH: `${commands}/add_path_${index}`,
      GITHUB_OUTPUT: `${commands}/set_output_${index}`,
    };
    for (const f of Object.values(files)) writeFileSync(f, '');
    const stepEnv: Record<string, string> = {};
    for (const [k, v] of Object.entries(step.env ?? {})) stepEnv[k] = expand(v, context);
    const file = `${options.runnerTemp}/step-${index}.sh`;
    writeFileSync(file, script);
    const env: NodeJS.ProcessEnv = {
      ...options.baseEnv,
      CI: 'true',
      GITHUB_ACTIONS: 'true',
      GITHUB_EVENT_NAME: options.event,
      GITHUB_WORKSPACE: options.workspace,
      RUNNER_TEMP: options.runnerTemp,
      ...githubVariables(context.github as Record<string, unknown>),
      ...fromWorkflow,
      ...setByEnvFile,
      ...stepEnv,
      ...files,
      PATH: [...paths, options.baseEnv.PATH ?? ''].join(':'),
    };
    const run = spawnSync('bash', ['--noprofile', '--norc', '-eo', 'pipefail', file], {
      cwd: resolve(options.workspace, step['working-directory'] ?? '.'),
      env,
      encoding: 'utf8',
      timeout: options.stepTimeoutMs ?? 300_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    const annotations = run.stdout.split('\n').flatMap((line) => {
      const m = ANNOTATION.exec(line);
      return m
        ? [
            {
              command: m[1] as Annotation['command'],
              properties: (m[2] ?? '').trim(),
              message: m[3] as string,
            },
          ]
        : [];
    });
    const stepSummary = readFileSync(files.GITHUB_STEP_SUMMARY, 'utf8');
    if (Buffer.byteLength(stepSummary) > STEP_SUMMARY_LIMIT)
      problems.push(`${jobId} / ${name}: its step summary is over GitHub's 1 MiB limit`);
    summary += stepSummary;
    readEnvFile(files.GITHUB_ENV, setByEnvFile);
    // Each line of GITHUB_PATH goes before the PATH of the steps after it, the latest first.
    for (const line of readFileSync(files.GITHUB_PATH, 'utf8').split('\n').reverse())
      if (line.trim() !== '') paths.unshift(line.trim());
    const ok = run.status === 0;
    if (!ok) {
      const tail = `${run.stdout}\n${run.stderr}`.trim().split('\n').slice(-15).join('\n');
      problems.push(
        `${jobId} / ${name}: exit ${run.status ?? run.signal ?? run.error?.message}\n${tail}`,
      );
      failed = true;
    }
    result({
      status: ok ? 'passed' : 'failed',
      ...(ok ? {} : { why: `exit ${run.status ?? run.signal}` }),
      stdout: run.stdout,
      stderr: run.stderr,
      annotations,
    });
  });
  return { job: jobId, ok: problems.length === 0, steps, summary, problems };
}

/** GITHUB_REPOSITORY and friends, from the context's github object. */
function githubVariables(github: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of ['repository', 'run_id', 'sha', 'ref', 'server_url', 'actor'])
    if (github[key] !== undefined) out[`GITHUB_${key.toUpperCase()}`] = String(github[key]);
  return out;
}

/** A scratch folder's parent must exist; a helper for callers laying out a workspace. */
export function writeFileIn(file: string, text: string, mode?: number): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, text, mode === undefined ? undefined : { mode });
}
