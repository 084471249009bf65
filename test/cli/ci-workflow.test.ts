// The shipped GitHub workflow (.github/workflows/vfleet.yml), run: every `run:` step of its pull
// request, push and nightly jobs, in a scratch git repository laid out as a fleet repository
// (fleet.yaml, the inventory it reads, vfleet installed as node_modules/.bin/vfleet — here a shim
// onto this checkout's bin), against a redis-server of the test's own standing in for the
// VFLEET_REDIS_URL secret. Steps that need GitHub or the network are skipped by their marker;
// what the skipped actions consume (artifact paths, the JUnit report) must exist. The file cannot
// rot: a step that fails, a summary, annotation or report not produced, fails this test.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { jobsOf, pipelineFromMarkdown, runGitlabJob } from '../helpers/gitlab-runner.js';
import { fromRoot } from '../helpers/paths.js';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';
import {
  type JobRun,
  jobRunsOn,
  loadWorkflow,
  type RunOptions,
  runJob,
  skipReason,
  stepName,
  type Workflow,
  writeFileIn,
} from '../helpers/workflow-runner.js';

const WORKFLOW = '.github/workflows/vfleet.yml';

/** Every scratch folder this file made, removed when it ends. */
const scratch: string[] = [];
function scratchDir(prefix: string): string {
  const dir = mkdtempSync(`${tmpdir()}/${prefix}`);
  scratch.push(dir);
  return dir;
}
after(() => {
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
});

/** A fleet repository: the spec, what it reads, the workflow, vfleet as a dependency. */
function fleetRepository(edit?: (spec: string) => string): string {
  const dir = scratchDir(`vfleet-ci-repo-`);
  const spec = readFileSync(fromRoot('fleet.yaml'), 'utf8');
  writeFileSync(`${dir}/fleet.yaml`, edit ? edit(spec) : spec);
  cpSync(fromRoot('examples', 'inventories'), `${dir}/examples/inventories`, { recursive: true });
  writeFileIn(`${dir}/${WORKFLOW}`, readFileSync(fromRoot(WORKFLOW), 'utf8'));
  writeFileIn(`${dir}/.gitignore`, 'node_modules/\n.vfleet/\nvfleet-*\n');
  // What `npm ci` leaves in a fleet repository that depends on vfleet.
  writeFileIn(
    `${dir}/node_modules/.bin/vfleet`,
    `#!/bin/sh\nexec '${process.execPath}' '${fromRoot('bin', 'vfleet.js')}' "$@"\n`,
    0o755,
  );
  git(dir, 'init', '-q', '-b', 'main');
  git(dir, 'add', '-A');
  git(dir, '-c', 'user.name=ci', '-c', 'user.email=ci@example.com', 'commit', '-qm', 'fleet');
  return dir;
}

function git(cwd: string, ...args: string[]): void {
  const r = spawnSync('git', args, { cwd, encoding: 'utf8' });
  assert.equal(r.status, 0, `git ${args.join(' ')}: ${r.stderr}`);
}

/** The machine the steps run on: this node first on PATH, nothing of the test's environment. */
const baseEnv: NodeJS.ProcessEnv = {
  PATH: `${dirname(process.execPath)}:/usr/local/bin:/usr/bin:/bin`,
  HOME: process.env.HOME,
  LANG: 'C.UTF-8',
  // The embedded hosts' simulated boot time: the runner's setting, not the workflow's.
  VFLEET_EMBEDDED_BOOT_MS: '0',
};

/** The secrets a job sees: the read-write URL (the production environment's) and the read-only one. */
interface Secrets {
  readonly VFLEET_REDIS_URL: string;
  readonly VFLEET_REDIS_URL_READONLY: string;
}

const NO_SECRETS: Secrets = { VFLEET_REDIS_URL: '', VFLEET_REDIS_URL_READONLY: '' };

function options(workspace: string, event: string, secrets: Secrets): RunOptions {
  return {
    workspace,
    runnerTemp: scratchDir(`vfleet-ci-runner-`),
    event,
    baseEnv,
    context: {
      secrets,
      github: {
        token: 'ghs_not-a-token',
        repository: 'example/fleet',
        run_id: '1',
        server_url: 'https://github.com',
        event: { pull_request: { number: 7 } },
      },
    },
  };
}

/** The one job that runs on `event`. */
function jobOn(workflow: Workflow, event: string): string {
  const jobs = Object.keys(workflow.jobs).filter((id) =>
    jobRunsOn(workflow.jobs[id] as Workflow['jobs'][string], event),
  );
  assert.equal(jobs.length, 1, `one job on ${event}: ${jobs.join(', ')}`);
  return jobs[0] as string;
}

/** The read-only user's rules, as docs/ci.md gives them (the test checks the page says so). */
const READ_ONLY_ACL = 'on ~vfleet:* +@read +@connection +info +multi +exec +eval +evalsha';

/** shellcheck's findings on a script (installed with the system packages CI uses). */
function shellcheck(script: string): string {
  const r = spawnSync('shellcheck', ['--shell=bash', '-'], { input: script, encoding: 'utf8' });
  assert.equal(r.error, undefined, 'shellcheck runs (scripts/install-system-packages.sh)');
  return r.stdout;
}

const statuses = (run: JobRun) => run.steps.map((s) => `${s.status}: ${s.name}`);

describe(`the shipped workflow ${WORKFLOW}`, () => {
  const workflow = loadWorkflow(fromRoot(WORKFLOW));
  let redis: TestRedisServer;
  /** What a pull request and the nightly job see: a user that can only read, nothing to write. */
  let readOnly: Secrets = NO_SECRETS;
  /** What the apply job sees: the production environment's read-write URL. */
  let readWrite: Secrets = NO_SECRETS;
  before(async () => {
    redis = await startRedisServer({ args: ['--maxmemory-policy', 'noeviction'], tcp: true });
    // docs/ci.md's read-only user, exactly: plan and the observed audits need no more.
    await redis
      .client()
      .call('ACL', 'SETUSER', 'vfleet-readonly', ...READ_ONLY_ACL.split(' '), '>ci-password');
    const port = new URL(redis.url).port;
    readOnly = {
      VFLEET_REDIS_URL: '',
      VFLEET_REDIS_URL_READONLY: `redis://vfleet-readonly:ci-password@127.0.0.1:${port}/0`,
    };
    readWrite = { ...readOnly, VFLEET_REDIS_URL: `${redis.url}/0` };
  });
  after(async () => redis?.stop());

  it('runs a job on pull requests, pushes to main and the nightly schedule; scripts pass shellcheck; skips only marked steps', () => {
    assert.deepEqual(Object.keys(workflow.on).sort(), [
      'pull_request',
      'push',
      'schedule',
      'workflow_dispatch',
    ]);
    assert.equal(jobOn(workflow, 'pull_request'), 'plan');
    assert.equal(jobOn(workflow, 'push'), 'apply');
    assert.equal(jobOn(workflow, 'schedule'), 'audit');
    assert.equal(jobOn(workflow, 'workflow_dispatch'), 'audit');
    const skipped: string[] = [];
    for (const [id, job] of Object.entries(workflow.jobs)) {
      job.steps.forEach((step, i) => {
        if (step.run === undefined) return;
        const where = `${id} / ${stepName(step, i)}`;
        assert.ok(!step.run.includes('${{'), `${where}: no \${{ }} inside a script`);
        assert.equal(shellcheck(step.run), '', `${where}: shellcheck`);
        const why = skipReason(step);
        // What reaches GitHub or the registry must say so, and nothing else may hide.
        if (/\b(gh|curl|wget)\s|\bnpm\s+(ci|install)\b/.test(step.run))
          assert.ok(why, `${where} needs the network: mark it # ci-test: skip`);
        if (why) skipped.push(`${where}: ${why}`);
      });
    }
    assert.ok(
      readFileSync(fromRoot('docs', 'ci.md'), 'utf8').includes(
        `ACL SETUSER vfleet-readonly on '>PASSWORD' '~vfleet:*' ${READ_ONLY_ACL.replace(/^on ~vfleet:\* /, '')}`,
      ),
      'docs/ci.md gives the read-only user this test runs as',
    );
    assert.deepEqual(
      skipped.map((s) => s.replace(/:.*/, '')),
      [
        'plan / Install',
        'plan / Comment the plan on the pull request',
        'apply / Install',
        'audit / Install',
      ],
    );
  });

  it('pull request: validates, plans into the summary and the comment file, gates on the planned audits', async () => {
    await redis.client().flushall();
    const repo = fleetRepository();
    const run = runJob(workflow, 'plan', options(repo, 'pull_request', readOnly));
    assert.deepEqual(run.problems, []);
    assert.deepEqual(statuses(run), [
      'skipped: actions/checkout@v4',
      'skipped: actions/setup-node@v4',
      'skipped: Install',
      'passed: vfleet on PATH',
      'passed: Validate',
      'passed: Plan',
      'skipped: Comment the plan on the pull request',
      'passed: Audit gate',
    ]);
    // The valid spec: no annotation.
    assert.deepEqual(
      run.steps.flatMap((s) => s.annotations),
      [],
    );
    const comment = readFileSync(`${repo}/vfleet-plan.md`, 'utf8');
    assert.match(comment, /^## vfleet plan: fleet lab\n/);
    assert.match(
      comment,
      /\*\*Plan: 26 to create, 0 to move, 0 to update, 6 to patch, 0 to destroy\.\*\*/,
    );
    assert.match(comment, /\| rhel-vdc \| host-socket-pair \| 0 \| 2 \| 4 \| \+2 \| ✅ \|/);
    assert.match(comment, /✅ 15 of 15 protected instances covered \(any 1 rack may fail\)/);
    // 26 creates and 6 patches: under the fold (30), both lists open.
    assert.match(comment, /^#### \+ create: 26 instances$/m);
    assert.doesNotMatch(comment, /<details>/);
    assert.match(run.summary, /^## vfleet plan: fleet lab$/m);
    assert.match(run.summary, /^## vfleet audit: lab \(planned\)$/m);
    assert.ok(run.summary.indexOf('## vfleet plan') < run.summary.indexOf('## vfleet audit'));
  });

  it('pull request without the secret (a fork): no plan, a notice, the planned audit still gates', () => {
    const repo = fleetRepository();
    const run = runJob(workflow, 'plan', options(repo, 'pull_request', NO_SECRETS));
    assert.deepEqual(run.problems, []);
    const plan = run.steps.find((s) => s.name === 'Plan');
    assert.equal(plan?.annotations[0]?.command, 'notice');
    assert.match(
      plan?.annotations[0]?.message ?? '',
      /^No VFLEET_REDIS_URL_READONLY or VFLEET_REDIS_URL secret here/,
    );
    assert.equal(existsSync(`${repo}/vfleet-plan.md`), false);
    assert.doesNotMatch(run.summary, /vfleet plan/);
    assert.match(run.summary, /^## vfleet audit: lab \(planned\)$/m);
  });

  it('pull request with an invalid spec: the validate step fails with an annotation at the line', () => {
    const repo = fleetRepository((spec) => spec.replace(/^ {2}name: lab$/m, '  name: "Lab|50%"'));
    const run = runJob(workflow, 'plan', options(repo, 'pull_request', readOnly));
    assert.equal(run.ok, false);
    assert.deepEqual(statuses(run).slice(4), [
      'failed: Validate',
      'not-run: Plan',
      'not-run: Comment the plan on the pull request',
      'not-run: Audit gate',
    ]);
    const validate = run.steps.find((s) => s.name === 'Validate');
    assert.deepEqual(validate?.annotations, [
      {
        command: 'error',
        properties: 'file=fleet.yaml,line=10,col=9,title=vfleet invalid-format',
        message:
          'metadata.name "Lab|50%25" is not valid; expected a DNS label (RFC 1123): lower-case letters, digits and \'-\', 1 to 63 characters, starting and ending with a letter or digit',
      },
    ]);
  });

  it('push to main: applies, then plans no changes into the summary', async () => {
    await redis.client().flushall();
    const repo = fleetRepository();
    const run = runJob(workflow, 'apply', options(repo, 'push', readWrite));
    assert.deepEqual(run.problems, []);
    assert.deepEqual(
      run.steps.filter((s) => s.status === 'passed').map((s) => s.name),
      ['vfleet on PATH', 'Apply', 'Converged'],
    );
    assert.match(run.summary, /\*\*No changes\.\*\* Fleet lab matches the spec\./);
  });

  it('push to main without the read-write secret: the apply step refuses in one line', () => {
    const run = runJob(workflow, 'apply', options(fleetRepository(), 'push', readOnly));
    assert.equal(run.ok, false);
    const apply = run.steps.find((s) => s.name === 'Apply');
    assert.equal(apply?.status, 'failed');
    assert.match(apply?.stderr ?? '', /REDIS_URL: set the VFLEET_REDIS_URL secret/);
  });

  it('nightly: the audits of what runs as HTML, CSV and JUnit artifacts, and the summary', async () => {
    // What runs: the fleet as the push job left it (applied above, in this Redis).
    const repo = fleetRepository();
    const run = runJob(workflow, 'audit', options(repo, 'schedule', readOnly));
    assert.deepEqual(run.problems, []);
    assert.deepEqual(statuses(run).slice(3), [
      'passed: vfleet on PATH',
      'passed: Audits',
      'skipped: Upload the audits',
      'skipped: Publish the JUnit report',
    ]);
    const junit = readFileSync(`${repo}/vfleet-audit/junit.xml`, 'utf8');
    assert.match(junit, /^<\?xml[^>]*>\s*<testsuites /);
    assert.match(junit, /<testsuite name="[^"]*licenses/);
    assert.match(readFileSync(`${repo}/vfleet-audit/audit.html`, 'utf8'), /^<!doctype html>/i);
    assert.match(
      readFileSync(`${repo}/vfleet-audit/licenses.csv`, 'utf8'),
      /^pool,product,metric,/,
    );
    assert.match(
      readFileSync(`${repo}/vfleet-audit/patches.csv`, 'utf8'),
      /^subject,subject_kind,/,
    );
    assert.match(
      readFileSync(`${repo}/vfleet-audit/failover.csv`, 'utf8'),
      /^instance,group,host,/,
    );
    assert.match(run.summary, /^## vfleet audit: lab \(observed\)$/m);
  });

  it("vfleet on PATH in vfleet's own repository: its bin/vfleet.js", () => {
    const repo = scratchDir(`vfleet-ci-self-`);
    // vfleet's own layout: bin/vfleet.js, here one that loads this checkout's.
    writeFileIn(
      `${repo}/bin/vfleet.js`,
      `#!/usr/bin/env node\nawait import(${JSON.stringify(`file://${fromRoot('bin', 'vfleet.js')}`)});\n`,
      0o755,
    );
    copyFileSync(fromRoot('package.json'), `${repo}/package.json`);
    const version = JSON.parse(readFileSync(fromRoot('package.json'), 'utf8')).version;
    const job = workflow.jobs.plan as Workflow['jobs'][string];
    const only = {
      ...workflow,
      jobs: { plan: { ...job, steps: job.steps.filter((s) => s.name === 'vfleet on PATH') } },
    };
    const run = runJob(only, 'plan', options(repo, 'pull_request', NO_SECRETS));
    assert.deepEqual(run.problems, []);
    assert.equal(run.steps[0]?.stdout.trim(), version);
  });
});

describe('the GitLab pipeline in docs/ci.md', () => {
  const pipeline = pipelineFromMarkdown(fromRoot('docs', 'ci.md'), '## GitLab CI');
  let redis: TestRedisServer;
  let vars: Record<string, string> = {};
  before(async () => {
    redis = await startRedisServer({ args: ['--maxmemory-policy', 'noeviction'], tcp: true });
    await redis
      .client()
      .call('ACL', 'SETUSER', 'vfleet-readonly', ...READ_ONLY_ACL.split(' '), '>ci-password');
    const port = new URL(redis.url).port;
    vars = {
      CI_DEFAULT_BRANCH: 'main',
      CI_API_V4_URL: 'https://gitlab.example.com/api/v4',
      CI_PROJECT_ID: '1',
      VFLEET_REDIS_URL: `${redis.url}/0`,
      VFLEET_REDIS_URL_READONLY: `redis://vfleet-readonly:ci-password@127.0.0.1:${port}/0`,
    };
  });
  after(async () => redis?.stop());

  /** The pipeline a source starts, run job by job in one fleet repository; each job's result. */
  const pipelineRun = (source: Record<string, string>) => {
    const repo = fleetRepository();
    const all = { ...vars, ...source };
    return jobsOf(pipeline, all).map((id) =>
      runGitlabJob(pipeline, id, {
        workspace: repo,
        runnerTemp: scratchDir('vfleet-ci-runner-'),
        vars: all,
        baseEnv,
      }),
    );
  };

  it('starts its jobs on merge requests, pushes to the default branch and schedules only; its scripts pass shellcheck', () => {
    const of = (vars: Record<string, string>) =>
      jobsOf(pipeline, { CI_DEFAULT_BRANCH: 'main', ...vars });
    assert.deepEqual(of({ CI_PIPELINE_SOURCE: 'merge_request_event' }), [
      'validate',
      'plan',
      'audit-gate',
    ]);
    assert.deepEqual(of({ CI_PIPELINE_SOURCE: 'push', CI_COMMIT_BRANCH: 'main' }), ['apply']);
    assert.deepEqual(of({ CI_PIPELINE_SOURCE: 'push', CI_COMMIT_BRANCH: 'topic' }), []);
    assert.deepEqual(of({ CI_PIPELINE_SOURCE: 'schedule' }), ['audit']);
    for (const [id, job] of Object.entries(pipeline.jobs)) {
      const items = [
        ...(job.before_script ?? pipeline.default?.before_script ?? []),
        ...job.script,
      ];
      assert.equal(shellcheck(items.join('\n')), '', `${id}: shellcheck`);
    }
  });

  it('merge request, then the push that applies it, then the nightly audit', async () => {
    await redis.client().flushall();
    const mr = pipelineRun({
      CI_PIPELINE_SOURCE: 'merge_request_event',
      CI_MERGE_REQUEST_IID: '7',
    });
    assert.deepEqual(
      mr.flatMap((r) => r.problems),
      [],
    );
    assert.deepEqual(
      mr.flatMap((r) =>
        r.steps.filter((s) => s.status === 'skipped').map((s) => `${r.job}: ${s.why}`),
      ),
      [
        "validate: downloads packages; the test runs this checkout's vfleet",
        "plan: downloads packages; the test runs this checkout's vfleet",
        'plan: talks to GitLab',
        "audit-gate: downloads packages; the test runs this checkout's vfleet",
      ],
    );
    const plan = mr.find((r) => r.job === 'plan');
    assert.match(plan?.steps.at(-1)?.stdout ?? '', /^\*\*Plan: 26 to create,/m);
    const push = pipelineRun({ CI_PIPELINE_SOURCE: 'push', CI_COMMIT_BRANCH: 'main' });
    assert.deepEqual(
      push.flatMap((r) => r.problems),
      [],
    );
    assert.match(
      push[0]?.steps.at(-1)?.stdout ?? '',
      /^No changes\. Fleet lab matches the spec\./m,
    );
    const nightly = pipelineRun({ CI_PIPELINE_SOURCE: 'schedule' });
    assert.deepEqual(
      nightly.flatMap((r) => r.problems),
      [],
    );
  });
});
