// A stand-in for a GitLab runner, enough to run the pipeline docs/ci.md gives: which jobs a
// pipeline source starts (`rules: - if:` of the forms `$A == "x"`, `$A == $B`, joined by `&&`),
// each job's `before_script` and `script` items as one bash session (`-eo pipefail`, as GitLab's
// bash shell runs them), and its artifacts checked to exist. An item marked `# ci-test: skip —
// why` is left out; anything it cannot evaluate it refuses (see workflow-runner.ts for why).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse } from 'yaml';
import type { JobRun, StepResult } from './workflow-runner.js';

export interface GitlabJob {
  readonly stage?: string;
  readonly rules?: ReadonlyArray<{ readonly if?: string; readonly when?: string }>;
  readonly before_script?: readonly string[];
  readonly script: readonly string[];
  readonly variables?: Readonly<Record<string, string>>;
  readonly artifacts?: {
    readonly paths?: readonly string[];
    readonly reports?: { readonly junit?: string | readonly string[] };
  };
}

export interface GitlabPipeline {
  readonly stages: readonly string[];
  readonly variables?: Readonly<Record<string, string>>;
  readonly default?: { readonly before_script?: readonly string[] };
  readonly workflow?: { readonly rules?: GitlabJob['rules'] };
  readonly jobs: Readonly<Record<string, GitlabJob>>;
}

const KEYWORDS = new Set(['stages', 'variables', 'default', 'workflow', 'include', 'image']);

/** The one ```yaml block under `heading` in a Markdown page, parsed as a pipeline. */
export function pipelineFromMarkdown(file: string, heading: string): GitlabPipeline {
  const page = readFileSync(file, 'utf8');
  const at = page.indexOf(`\n${heading}\n`);
  if (at < 0) throw new Error(`${file} has no heading ${heading}`);
  const start = page.indexOf('```yaml\n', at);
  const end = page.indexOf('\n```\n', start);
  if (start < 0 || end < 0) throw new Error(`${file}: no yaml block under ${heading}`);
  const doc = parse(page.slice(start + '```yaml\n'.length, end)) as Record<string, unknown>;
  const jobs: Record<string, GitlabJob> = {};
  for (const [k, v] of Object.entries(doc)) if (!KEYWORDS.has(k)) jobs[k] = v as GitlabJob;
  return { ...(doc as Omit<GitlabPipeline, 'jobs'>), jobs };
}

/** `$A == "x" && $B == $C`, with the variables given; other forms are refused. */
export function ruleHolds(expression: string, vars: Readonly<Record<string, string>>): boolean {
  return expression.split('&&').every((term) => {
    const m = /^\s*\$(\w+)\s*(==|!=)\s*(?:"([^"]*)"|\$(\w+))\s*$/.exec(term);
    if (!m) throw new Error(`rule not understood by the test's runner: ${expression}`);
    const left = vars[m[1] as string] ?? '';
    const right = m[3] ?? vars[m[4] as string] ?? '';
    return m[2] === '==' ? left === right : left !== right;
  });
}

const runsBy = (rules: GitlabJob['rules'], vars: Readonly<Record<string, string>>) =>
  rules === undefined ||
  rules.some((r) => {
    if (r.when !== undefined && r.when !== 'on_success')
      throw new Error(`rule when: ${r.when} not understood by the test's runner`);
    return r.if === undefined || ruleHolds(r.if, vars);
  });

/** The jobs a pipeline started with these CI variables runs, in the order of their stages. */
export function jobsOf(pipeline: GitlabPipeline, vars: Readonly<Record<string, string>>): string[] {
  if (!runsBy(pipeline.workflow?.rules, vars)) return [];
  const byStage = (id: string) => pipeline.stages.indexOf(pipeline.jobs[id]?.stage ?? 'test');
  return Object.keys(pipeline.jobs)
    .filter((id) => runsBy(pipeline.jobs[id]?.rules, vars))
    .sort((a, b) => byStage(a) - byStage(b));
}

const SKIP_MARKER = /^\s*#\s*ci-test:\s*skip\b\s*[—:-]?\s*(.*)$/m;

export interface GitlabRunOptions {
  readonly workspace: string;
  readonly runnerTemp: string;
  /** CI_PIPELINE_SOURCE and the rest of GitLab's predefined variables, and the project's. */
  readonly vars: Readonly<Record<string, string>>;
  readonly baseEnv: NodeJS.ProcessEnv;
  readonly timeoutMs?: number;
}

/** Runs one job: its scripts in one bash session, then checks its artifacts. */
export function runGitlabJob(pipeline: GitlabPipeline, id: string, options: GitlabRunOptions) {
  const job = pipeline.jobs[id];
  if (!job) throw new Error(`no job ${id}`);
  const items = [...(job.before_script ?? pipeline.default?.before_script ?? []), ...job.script];
  const skipped: StepResult[] = [];
  const kept = items.filter((item) => {
    const m = SKIP_MARKER.exec(item);
    if (m)
      skipped.push({
        name: item.split('\n')[1]?.trim() ?? item,
        status: 'skipped',
        why: m[1]?.trim() || '(no reason given)',
        stdout: '',
        stderr: '',
        annotations: [],
      });
    return !m;
  });
  const file = `${options.runnerTemp}/${id}.sh`;
  writeFileSync(file, kept.join('\n'));
  const run = spawnSync('bash', ['--noprofile', '--norc', '-eo', 'pipefail', file], {
    cwd: options.workspace,
    env: {
      ...options.baseEnv,
      CI: 'true',
      GITLAB_CI: 'true',
      CI_PROJECT_DIR: options.workspace,
      ...pipeline.variables,
      ...job.variables,
      ...options.vars,
    },
    encoding: 'utf8',
    timeout: options.timeoutMs ?? 300_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  const problems: string[] = [];
  if (run.status !== 0) {
    const tail = `${run.stdout}\n${run.stderr}`.trim().split('\n').slice(-15).join('\n');
    problems.push(`${id}: exit ${run.status ?? run.signal ?? run.error?.message}\n${tail}`);
  }
  const junit = job.artifacts?.reports?.junit;
  const artifacts = [
    ...(job.artifacts?.paths ?? []),
    ...(junit === undefined ? [] : typeof junit === 'string' ? [junit] : junit),
  ];
  for (const p of artifacts) {
    const full = resolve(options.workspace, p);
    if (!existsSync(full)) problems.push(`${id}: the artifact ${p} does not exist`);
    else if (statSync(full).isDirectory() && readdirSync(full).length === 0)
      problems.push(`${id}: the artifact ${p} is empty`);
  }
  const result: JobRun = {
    job: id,
    ok: problems.length === 0,
    steps: [
      ...skipped,
      {
        name: 'script',
        status: run.status === 0 ? 'passed' : 'failed',
        stdout: run.stdout,
        stderr: run.stderr,
        annotations: [],
      },
    ],
    summary: '',
    problems,
  };
  return result;
}
