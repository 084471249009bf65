// `vfleet plan --format md` and `--step-summary`: the Markdown view table-driven on built plans
// (escaping in cells, folding past 30 actions a kind, GitHub's comment limit), then the CLI on
// fleet.yaml against a redis-server of its own (formats, the --json shorthand, the step summary
// appended beside the normal output, one-line refusals).
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import {
  FOLD_OVER,
  MARKDOWN_BUDGET,
  renderPlanMarkdown,
} from '../../src/cli/views/plan-markdown-view.js';
import type { ActionKind, Plan, PlanAction } from '../../src/model/plan.js';
import { useApplyRedis, vfleet, workdir } from '../helpers/vfleet-cli.js';

function anAction(kind: ActionKind, instance: string, overrides: Partial<PlanAction> = {}) {
  return {
    id: `${instance}.${kind}`,
    kind,
    instance,
    group: instance.replace(/-\d+$/, ''),
    host: 'hv-1',
    fromHost: null,
    generation: 1,
    image: 'debian',
    resources: { vcpus: 1, memoryMiB: 512, diskGiB: 1 },
    failoverHost: null,
    dependsOn: [],
    reason: 'new replica',
    ...overrides,
  } as PlanAction;
}

function aPlan(actions: PlanAction[], overrides: Partial<Plan> = {}): Plan {
  const count = (...kinds: ActionKind[]) => actions.filter((a) => kinds.includes(a.kind)).length;
  return {
    formatVersion: '1',
    id: 'p1',
    fleet: 'lab',
    specHash: 'a'.repeat(64),
    stateVersion: 0,
    actions,
    images: {},
    unplaceable: [],
    licenses: [],
    failover: { tolerate: 0, domain: 'host', protected: 0, covered: 0 },
    summary: {
      create: count('create'),
      move: count('move'),
      update: count('update', 'start', 'retarget'),
      patch: count('patch'),
      destroy: count('destroy'),
    },
    ...overrides,
  };
}

/** The cells of a table row, split at the pipes a reader sees (not the escaped ones). */
const cellsOf = (row: string) =>
  row
    .slice(2, -2)
    .split(/(?<!\\) \| /)
    .map((c) => c.trim());

describe('the plan as Markdown', () => {
  it('one table per kind, each action with its host and reason; names escaped in their cells', () => {
    const md = renderPlanMarkdown(
      aPlan(
        [
          anAction('create', 'web|0', { host: 'h_1', failoverHost: 'h*2', reason: 'a <b> | c' }),
          anAction('move', 'db-0', {
            fromHost: 'hv-1',
            host: 'hv-2',
            reason: 'failback',
            stopFirst: true,
          }),
          anAction('patch', 'web-1', { reason: 'openssl 3.0.13-1~deb12u1 → 3.0.15-1~deb12u1' }),
          anAction('destroy', 'old-0', { reason: 'group removed' }),
        ],
        {
          licenses: [
            { pool: 'win`dc', metric: 'host-core', entitlement: 16, before: 8, after: 24 },
          ],
          failover: { tolerate: 1, domain: 'rack', protected: 2, covered: 1 },
          unplaceable: [
            { instance: 'big-0', group: 'big', reasons: { 'insufficient-memory': 3 } },
            { instance: 'big-1', group: 'big', reasons: { 'insufficient-memory': 3 } },
          ],
        },
      ),
      { warnings: ['hv-3 is lost | gone'] },
    );
    const lines = md.split('\n');
    assert.equal(lines[0], '## vfleet plan: fleet lab');
    assert.equal(
      lines[2],
      '**Plan: 1 to create, 1 to move, 0 to update, 1 to patch, 1 to destroy.**',
    );
    assert.ok(lines.includes('> hv-3 is lost \\| gone  '), 'the warning, its pipe escaped');
    const row = (first: string) => {
      const found = lines.find((l) => l.startsWith(`| ${first} |`));
      assert.ok(found, `a row for ${first}`);
      return cellsOf(found);
    };
    assert.deepEqual(row('web\\|0'), ['web\\|0', 'h\\_1', 'h\\*2', 'a \\<b\\> \\| c']);
    assert.deepEqual(row('db-0'), [
      'db-0',
      'hv-1',
      'hv-2',
      '–',
      'failback (stopped first: one of a swap)',
    ]);
    assert.deepEqual(row('web-1'), [
      'web-1',
      'hv-1',
      'openssl 3.0.13-1\\~deb12u1 → 3.0.15-1\\~deb12u1',
      '1', // its batch
    ]);
    assert.deepEqual(row('old-0'), ['old-0', 'hv-1', 'group removed']);
    assert.deepEqual(row('win\\`dc'), [
      'win\\`dc',
      'host-core',
      '8',
      '24',
      '16',
      '+16',
      '❌ exceeds by 8',
    ]);
    assert.deepEqual(row('2: big-0 … big-1'), [
      '2: big-0 … big-1',
      'big',
      'insufficient-memory (3 hosts)',
    ]);
    assert.ok(lines.includes('❌ 1 of 2 protected instances covered (any 1 rack may fail).'));
    // Kinds in the order a reviewer reads them.
    const headings = lines.filter((l) => l.startsWith('#### '));
    assert.deepEqual(headings, [
      '#### + create: 1 instance',
      '#### &gt; move: 1 instance',
      '#### ^ patch: 1 instance',
      '#### - destroy: 1 instance',
    ]);
  });

  it(`folds a kind of more than ${FOLD_OVER} actions behind its count`, () => {
    const creates = (n: number) =>
      Array.from({ length: n }, (_, i) => anAction('create', `web-${i}`));
    const open = renderPlanMarkdown(aPlan(creates(FOLD_OVER)));
    assert.match(open, /^#### \+ create: 30 instances$/m);
    assert.doesNotMatch(open, /<details>/);
    const closed = renderPlanMarkdown(aPlan(creates(FOLD_OVER + 1)));
    assert.match(
      closed,
      /^<details><summary>\+ create: 31 instances<\/summary>\n\n\| Instance \| Host \|[^\n]*\n(\|[^\n]*\n){32}\n<\/details>$/m,
    );
  });

  it("stays under GitHub's comment limit: past it, each list shows its first rows and how many more", () => {
    const actions = Array.from({ length: 20_000 }, (_, i) =>
      anAction('create', `web-${i}`, { reason: `restart: hv-r1-${i % 40} is down` }),
    );
    const md = renderPlanMarkdown(aPlan(actions));
    assert.ok(md.length <= MARKDOWN_BUDGET, `${md.length} characters`);
    assert.match(md, /\*\*Plan: 20000 to create,/);
    assert.match(md, /<summary>\+ create: 20000 instances<\/summary>/);
    assert.match(md, /… and \d+ more, not shown here: `vfleet plan` or `vfleet plan --json`/);
    assert.ok(md.trimEnd().endsWith('</sub>'), 'the document is whole, not cut');
  });

  it('no changes, and a destroy plan', () => {
    assert.match(
      renderPlanMarkdown(aPlan([])),
      /^## vfleet plan: fleet lab\n\n\*\*No changes\.\*\* Fleet lab matches the spec\.\n/,
    );
    const destroy = renderPlanMarkdown(
      aPlan([anAction('destroy', 'web-0', { reason: 'destroy requested' })], {
        destroy: true,
        failover: { tolerate: 1, domain: 'rack', protected: 1, covered: 0 },
      }),
    );
    assert.match(destroy, /^## vfleet plan: fleet lab \(destroy\)$/m);
    assert.doesNotMatch(destroy, /Failover/, 'a destroy plan leaves nothing to cover');
  });
});

describe('vfleet plan --format and --step-summary', () => {
  const redis = useApplyRedis();

  it('md, json and --json; text by default', async () => {
    const dir = await redis.fresh();
    const md = vfleet(['plan', '--format', 'md'], dir, redis.env);
    assert.equal(md.code, 0, md.stderr);
    assert.match(md.stdout, /^## vfleet plan: fleet lab\n\n\*\*Plan: 26 to create,/);
    const json = vfleet(['plan', '--json'], dir, redis.env);
    const format = vfleet(['plan', '--format', 'json'], dir, redis.env);
    assert.deepEqual(JSON.parse(format.stdout), JSON.parse(json.stdout));
    assert.equal(JSON.parse(json.stdout).summary.create, 26);
    const text = vfleet(['plan', '--format', 'text'], dir, redis.env);
    assert.equal(text.stdout, vfleet(['plan'], dir, redis.env).stdout);
    assert.match(text.stdout, /^vfleet will perform the following actions:/);
  });

  it('--step-summary appends the Markdown beside the normal output, for plan and audit', async () => {
    const dir = await redis.fresh();
    const summary = `${dir}/summary.md`;
    writeFileSync(summary, 'earlier step\n');
    const env = { ...redis.env, GITHUB_STEP_SUMMARY: summary };
    const plan = vfleet(['plan', '--json', '--step-summary'], dir, env);
    assert.equal(plan.code, 0, plan.stderr);
    assert.equal(JSON.parse(plan.stdout).summary.create, 26);
    const audit = vfleet(
      ['audit', 'all', '--planned', '--format', 'junit', '--out', 'junit.xml', '--step-summary'],
      dir,
      env,
    );
    assert.equal(audit.code, 2, 'findings: patches below their baseline');
    assert.match(
      audit.stdout,
      /^Wrote the licenses, patches, failover audit \(junit\) to junit\.xml/,
    );
    assert.ok(existsSync(`${dir}/junit.xml`));
    const text = readFileSync(summary, 'utf8');
    assert.match(text, /^earlier step\n## vfleet plan: fleet lab\n/);
    assert.match(text, /\n\n## vfleet audit: lab \(planned\)\n/);
    assert.ok(text.endsWith('\n\n'), 'a blank line after each, so summaries stay apart');
  });

  it('refuses in one line: --json with another --format, --step-summary without the variable or a writable file', async () => {
    const dir = await redis.fresh();
    const cases: Array<[string[], NodeJS.ProcessEnv, RegExp]> = [
      [
        ['plan', '--json', '--format', 'md'],
        {},
        /^vfleet: --json is --format json, and --format md asks for another: give one of them\n$/,
      ],
      [
        ['plan', '--format', 'html'],
        {},
        /argument 'html' is invalid\. Allowed choices are text, md, json/,
      ],
      [
        ['plan', '--step-summary'],
        { GITHUB_STEP_SUMMARY: '' },
        /^vfleet: --step-summary: GITHUB_STEP_SUMMARY is not set \(GitHub Actions sets it/,
      ],
      [
        ['audit', 'all', '--planned', '--step-summary'],
        { GITHUB_STEP_SUMMARY: '' },
        /^vfleet: --step-summary: GITHUB_STEP_SUMMARY is not set/,
      ],
      [
        ['audit', 'all', '--planned', '--step-summary'],
        { GITHUB_STEP_SUMMARY: `${dir}/no/such/folder/summary.md` },
        /^vfleet: --step-summary: cannot append to .*summary\.md \(GITHUB_STEP_SUMMARY\): ENOENT\n$/,
      ],
    ];
    for (const [args, env, expected] of cases) {
      const r = vfleet(args, dir, { ...redis.env, ...env });
      assert.equal(r.code, 1, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, expected, args.join(' '));
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    }
  });

  it('a missing spec under --step-summary is the spec error, not a summary', () => {
    const dir = workdir();
    const summary = `${dir}/summary.md`;
    const r = vfleet(['plan', 'nope.yaml', '--step-summary'], dir, {
      ...redis.env,
      GITHUB_STEP_SUMMARY: summary,
    });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^nope\.yaml:1:1: error: cannot read the file/);
    assert.equal(existsSync(summary), false);
  });
});
