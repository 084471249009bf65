// The rolling patch as the planner makes it (make-plan.ts) and maintenance windows as
// patching/patch-window.ts reads them: batches of maxUnavailable checked as a property over
// many group sizes, deferral text, and the spec's checks of windows and rollback.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { renderPlanText } from '../../src/cli/views/plan-view.js';
import type { PatchWindow } from '../../src/model/fleet.js';
import type { FleetDocument } from '../../src/model/fleet-spec.generated.js';
import { EMPTY_STATE } from '../../src/model/observed.js';
import type { Plan } from '../../src/model/plan.js';
import { windowAt } from '../../src/patching/patch-window.js';
import { makePlan } from '../../src/plan/make-plan.js';
import { rolloutLine, rolloutsOf } from '../../src/plan/rollouts.js';
import { schedule } from '../../src/scheduler/schedule.js';
import { loadFleet } from '../../src/spec/load-fleet.js';
import { normalizeFleet } from '../../src/spec/normalize.js';
import { aFleetDocument, aGroup, aHost, anImage, toYaml } from '../helpers/spec-builders.js';

const OLD = { openssl: '3.0.13-1~deb12u1', libc6: '2.36-9' };

function docWith(
  groups: FleetDocument['spec']['instances'],
  extra: Partial<FleetDocument['spec']> = {},
) {
  return aFleetDocument({
    hosts: [
      aHost({ name: 'hv-01', memoryMiB: 1_048_576, cpu: { sockets: 2, coresPerSocket: 64 } }),
      aHost({ name: 'hv-02', memoryMiB: 1_048_576, cpu: { sockets: 2, coresPerSocket: 64 } }),
    ],
    images: [anImage({ packages: OLD })],
    patchBaselines: [
      {
        name: 'sec',
        appliesTo: { family: 'debian' },
        minimum: {
          openssl: { version: '3.0.15-1~deb12u1', security: true },
          libc6: { version: '2.36-9+deb12u7', reboot: true },
        },
      },
    ],
    instances: groups,
    ...extra,
  });
}

function planOf(doc: FleetDocument, nowMs?: number): Plan {
  const fleet = normalizeFleet(doc);
  return makePlan(fleet, schedule(fleet), EMPTY_STATE, {
    id: 'p',
    specHash: 'h',
    ...(nowMs === undefined ? {} : { nowMs }),
  });
}

const small = { vcpus: 1, memoryMiB: 64, diskGiB: 0 };

describe('rolling patch plans', () => {
  it('batches of maxUnavailable: batch n+1 waits for every patch of batch n and nothing else of its group (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 23 }),
        fc.integer({ min: 1, max: 6 }),
        (replicas, n) => {
          const plan = planOf(
            docWith([
              aGroup({
                replicas,
                patchBaseline: 'sec',
                resources: small,
                patch: { maxUnavailable: n },
              }),
              aGroup({ name: 'db', replicas: 3, patchBaseline: 'sec', resources: small }),
            ]),
          );
          const web = plan.actions.filter((a) => a.kind === 'patch' && a.group === 'web');
          assert.equal(web.length, replicas);
          const byBatch = new Map<number, string[]>();
          for (const a of web)
            byBatch.set(a.batch ?? 0, [...(byBatch.get(a.batch ?? 0) ?? []), a.id]);
          const batches = [...byBatch.keys()];
          assert.deepEqual(
            batches,
            batches.map((_, i) => i + 1),
            'batches numbered 1, 2, … in order',
          );
          for (const [batch, ids] of byBatch) {
            assert.ok(ids.length <= n, `batch ${batch} has ${ids.length} > ${n}`);
            if (batch < batches.length) assert.equal(ids.length, n, 'only the last batch is short');
            for (const id of ids) {
              const a = web.find((x) => x.id === id);
              const patchDeps = a?.dependsOn.filter((d) => d.endsWith('.patch')) ?? [];
              assert.deepEqual(patchDeps.sort(), (byBatch.get(batch - 1) ?? []).slice().sort());
              assert.ok(a?.dependsOn.includes(`${a.instance}.create`), 'after its own create');
            }
          }
          // db keeps the default: one at a time, its own chain.
          const db = plan.actions.filter((a) => a.kind === 'patch' && a.group === 'db');
          assert.deepEqual(
            db.map((a) => [a.batch, a.dependsOn.filter((d) => d.endsWith('.patch'))]),
            [
              [1, []],
              [2, ['db-0.patch']],
              [3, ['db-1.patch']],
            ],
          );
        },
      ),
      { numRuns: 60 },
    );
  });

  it('carries the reboot entries it raises and the rollback policy; the plan shows the batches', () => {
    const plan = planOf(
      docWith(
        [
          aGroup({
            replicas: 5,
            patchBaseline: 'sec',
            resources: small,
            patch: { maxUnavailable: 2 },
          }),
        ],
        {
          images: [anImage({ kind: 'vm', packages: OLD, source: { disk: 'd.qcow2' } })],
        },
      ),
    );
    const first = plan.actions.find((a) => a.id === 'web-0.patch');
    assert.deepEqual(first?.reboot, ['libc6']);
    assert.equal(first?.rollback, undefined);
    const text = renderPlanText(plan);
    assert.match(text, /\^ patch web-0 on hv-0\d: .* \(baseline sec\) \[batch 1\/3\]\n/);
    assert.match(text, /\^ patch web-4 on hv-0\d: .* \[batch 3\/3\]\n/);
    assert.match(
      text,
      /Rolling patches \(docs\/patching\.md\):\n {2}web: 5 patches in 3 batches of at most 2, stop at the first failure\n/,
    );
    const rollback = planOf(
      docWith(
        [
          aGroup({
            replicas: 2,
            patchBaseline: 'sec',
            resources: small,
            patch: { onFailure: 'rollback' },
          }),
        ],
        { images: [anImage({ kind: 'vm', packages: OLD, source: { disk: 'd.qcow2' } })] },
      ),
    );
    assert.ok(rollback.actions.filter((a) => a.kind === 'patch').every((a) => a.rollback));
    assert.match(rolloutLine(rolloutsOf(rollback)[0] as never), /roll the failed replica back/);
  });

  it('outside the window every patch of the group is deferred until it opens; inside, none; the fleet window is the default', () => {
    const doc = docWith(
      [
        aGroup({
          replicas: 3,
          patchBaseline: 'sec',
          resources: small,
          patchWindow: { cron: '0 3 * * *', duration: '1h' },
        }),
        aGroup({ name: 'db', replicas: 2, patchBaseline: 'sec', resources: small }),
      ],
      {
        patching: {
          patchWindow: { cron: '0 2 * * sun', duration: '4h', timezone: 'Europe/Paris' },
        },
      },
    );
    // Saturday 2024-06-01 12:00 UTC: web opens at 03:00 UTC the next day; db on Sunday 02:00 in
    // Paris, 00:00 UTC.
    const saturday = Date.parse('2024-06-01T12:00:00Z');
    const plan = planOf(doc, saturday);
    const until = (g: string) => [
      ...new Set(
        plan.actions.filter((a) => a.group === g && a.kind === 'patch').map((a) => a.deferredUntil),
      ),
    ];
    assert.deepEqual(until('web'), ['2024-06-02T03:00:00.000Z']);
    assert.deepEqual(until('db'), ['2024-06-02T00:00:00.000Z']);
    const text = renderPlanText(plan);
    assert.match(
      text,
      /\^ patch web-0 on .* \[batch 1\/3, deferred until 2024-06-02T03:00:00\.000Z\]/,
    );
    assert.match(
      text,
      /Plan: 5 to create, 0 to move, 0 to update, 5 to patch \(5 deferred\), 0 to destroy\./,
    );
    assert.match(
      text,
      /db: 2 patches in 2 batches of at most 1, stop at the first failure; deferred until 2024-06-02T00:00:00\.000Z \(window 0 2 \* \* sun for 4h \(Europe\/Paris\)\)/,
    );
    // Sunday 03:30 UTC: both windows open.
    const inside = planOf(doc, Date.parse('2024-06-02T03:30:00Z'));
    assert.ok(inside.actions.every((a) => a.deferredUntil === undefined));
    // Without a clock nothing is marked (apply still checks as each patch starts).
    assert.ok(planOf(doc).actions.every((a) => a.deferredUntil === undefined));
  });
});

describe('patch windows', () => {
  const w = (
    cron: string,
    duration: string,
    durationMs: number,
    timezone = 'UTC',
  ): PatchWindow => ({
    cron,
    duration,
    durationMs,
    timezone,
  });
  const at = (iso: string) => Date.parse(iso);
  const cases: Array<[string, PatchWindow, string, ReturnType<typeof windowAt>]> = [
    [
      'at the opening minute',
      w('0 2 * * *', '1h', 3_600_000),
      '2024-06-01T02:00:00Z',
      { open: true, openedAt: at('2024-06-01T02:00:00Z'), closesAt: at('2024-06-01T03:00:00Z') },
    ],
    [
      'a millisecond before it opens',
      w('0 2 * * *', '1h', 3_600_000),
      '2024-06-01T01:59:59.999Z',
      { open: false, opensAt: at('2024-06-01T02:00:00Z') },
    ],
    [
      'its last millisecond',
      w('0 2 * * *', '1h', 3_600_000),
      '2024-06-01T02:59:59.999Z',
      { open: true, openedAt: at('2024-06-01T02:00:00Z'), closesAt: at('2024-06-01T03:00:00Z') },
    ],
    [
      'as it closes',
      w('0 2 * * *', '1h', 3_600_000),
      '2024-06-01T03:00:00Z',
      { open: false, opensAt: at('2024-06-02T02:00:00Z') },
    ],
    [
      'across midnight',
      w('0 23 * * *', '3h', 10_800_000),
      '2024-06-02T01:00:00Z',
      { open: true, openedAt: at('2024-06-01T23:00:00Z'), closesAt: at('2024-06-02T02:00:00Z') },
    ],
    [
      'weekly, in Paris (UTC+2 in June)',
      w('0 2 * * sun', '4h', 14_400_000, 'Europe/Paris'),
      '2024-06-02T00:30:00Z',
      { open: true, openedAt: at('2024-06-02T00:00:00Z'), closesAt: at('2024-06-02T04:00:00Z') },
    ],
    [
      'weekly, the day before',
      w('0 2 * * sun', '4h', 14_400_000, 'Europe/Paris'),
      '2024-06-01T12:00:00Z',
      { open: false, opensAt: at('2024-06-02T00:00:00Z') },
    ],
    [
      'overlapping openings count as one',
      w('*/30 * * * *', '1h', 3_600_000),
      '2024-06-01T10:45:00Z',
      { open: true, openedAt: at('2024-06-01T10:30:00Z'), closesAt: at('2024-06-01T11:30:00Z') },
    ],
  ];
  for (const [name, window, now, expected] of cases) {
    it(name, () => assert.deepEqual(windowAt(window, at(now)), expected));
  }
});

describe('the spec checks windows and rollouts', () => {
  const diagnostics = (doc: FleetDocument) =>
    loadFleet(new TextEncoder().encode(toYaml(doc)), 'fleet.yaml').diagnostics.map(
      (d) => `${d.line}:${d.column} ${d.severity} ${d.code} ${d.path}: ${d.message}`,
    );

  it('a bad cron, zone or duration, and rollback of sandboxes, are errors at their line and column', () => {
    const found = diagnostics(
      docWith([
        aGroup({
          replicas: 2,
          patchBaseline: 'sec',
          resources: small,
          patch: { onFailure: 'rollback' },
          patchWindow: { cron: '0 25 * * *', duration: '30s', timezone: 'Mars/Olympus' },
        }),
      ]),
    );
    const line = (path: string) => found.find((d) => d.includes(` ${path}: `)) ?? `none at ${path}`;
    assert.match(
      line('spec.instances[0].patch.onFailure'),
      /^\d+:\d+ error rollout-policy .*only VM groups can roll back/,
    );
    assert.match(
      line('spec.instances[0].patchWindow.cron'),
      /error patch-window .*expected range 0-23/,
    );
    assert.match(
      line('spec.instances[0].patchWindow.duration'),
      /error patch-window .*shorter than a minute/,
    );
    assert.match(
      line('spec.instances[0].patchWindow.timezone'),
      /error patch-window .*"Mars\/Olympus" is not a time zone/,
    );
    assert.equal(found.length, 4, found.join('\n'));
  });

  it('six fields are refused; rollback of VMs is accepted; a rollout without a baseline is warned about', () => {
    const found = diagnostics(
      docWith(
        [
          aGroup({
            replicas: 2,
            patchBaseline: 'sec',
            resources: small,
            patch: { onFailure: 'rollback', maxUnavailable: 2 },
          }),
          aGroup({ name: 'free', replicas: 1, resources: small, patch: { maxUnavailable: 3 } }),
        ],
        {
          images: [anImage({ kind: 'vm', packages: OLD, source: { disk: 'd.qcow2' } })],
          patching: { patchWindow: { cron: '0 0 2 * * *', duration: '1h' } },
        },
      ),
    );
    assert.deepEqual(found.map((d) => d.replace(/^\d+:\d+ /, '')).sort(), [
      "error patch-window spec.patching.patchWindow.cron: a window's cron expression has five fields (minute hour day-of-month month day-of-week), not 6",
      'warning rollout-policy spec.instances[1].patch: patch is ignored: group free has no patchBaseline, so nothing patches it',
    ]);
  });
});
