// The patch audit's states from each instance's last patch (pending-reboot, failed) beside the
// baseline's own (compliant, outdated, missing), table-driven; security updates counted apart,
// in the findings, the summary and the CSV's classification column.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse } from 'csv-parse/sync';
import { observedInput } from '../../src/audit/audit-input.js';
import { patchAudit } from '../../src/audit/patch-audit.js';
import { buildReport } from '../../src/audit/report.js';
import { CSV_COLUMNS, renderAuditCsv } from '../../src/cli/views/audit/csv.js';
import { renderAuditText } from '../../src/cli/views/audit/text.js';
import type { PatchStatus } from '../../src/model/instances.js';
import type { ObservedInstance } from '../../src/model/observed.js';
import { normalizeFleet } from '../../src/spec/normalize.js';
import { aFleetDocument, aGroup, anImage } from '../helpers/spec-builders.js';

const REQUIRED = { openssl: '3.0.15-1~deb12u1', libc6: '2.36-9+deb12u7' };
const fleet = normalizeFleet(
  aFleetDocument({
    images: [anImage({ packages: {} })],
    patchBaselines: [
      {
        name: 'sec',
        appliesTo: { family: 'debian' },
        minimum: {
          openssl: { version: REQUIRED.openssl, security: true },
          libc6: REQUIRED.libc6,
        },
      },
    ],
    instances: [aGroup({ replicas: 6, patchBaseline: 'sec' })],
  }),
);

const instance = (name: string, packages: Record<string, string>): ObservedInstance => ({
  instance: name,
  group: 'web',
  host: 'hv-01',
  generation: 2,
  status: 'running',
  image: 'debian-12',
  resources: { vcpus: 2, memoryMiB: 2048, diskGiB: 10 },
  failoverHost: null,
  packages,
});
const last = (name: string, fields: Partial<PatchStatus>): PatchStatus => ({
  instance: name,
  generation: 2,
  outcome: 'patched',
  packages: ['libc6', 'openssl'],
  rebootRequired: false,
  at: 0,
  ...fields,
});

// subject, installed, its last patch, the subject's status, openssl's and libc6's statuses.
const CASES: Array<
  [string, Record<string, string>, Partial<PatchStatus> | null, string, string, string]
> = [
  ['web-0', REQUIRED, null, 'compliant', 'compliant', 'compliant'],
  [
    'web-1',
    { openssl: '3.0.13-1~deb12u1', libc6: REQUIRED.libc6 },
    null,
    'non-compliant',
    'outdated',
    'compliant',
  ],
  ['web-2', { openssl: REQUIRED.openssl }, null, 'non-compliant', 'compliant', 'missing'],
  [
    'web-3',
    REQUIRED,
    { rebootRequired: true },
    'pending-reboot',
    'pending-reboot',
    'pending-reboot',
  ],
  // Patched, but only openssl changed by it, and the reboot done since: compliant.
  [
    'web-4',
    REQUIRED,
    { packages: ['openssl'], rebootRequired: false },
    'compliant',
    'compliant',
    'compliant',
  ],
  // Its patch failed on openssl (left not installed); libc6 was raised and asks for a reboot.
  [
    'web-5',
    { libc6: REQUIRED.libc6 },
    { outcome: 'failed', rebootRequired: true, error: 'patch-failed: hv-01: web-5: openssl broke' },
    'failed',
    'failed',
    'pending-reboot',
  ],
];

const instances = CASES.map(([name, packages]) => instance(name, packages));
const statuses = new Map(
  CASES.flatMap(([name, , l]) => (l === null ? [] : [[name, last(name, l)] as const])),
);
const input = {
  ...observedInput(fleet, { version: 1, instances }),
  patchStatuses: statuses,
};

describe('patch audit states', () => {
  const audit = patchAudit(input);
  for (const [name, , , subject, openssl, libc6] of CASES) {
    it(`${name}: ${subject} (openssl ${openssl}, libc6 ${libc6})`, () => {
      const s = audit.subjects.find((x) => x.subject === name);
      assert.equal(s?.status, subject);
      const row = (p: string) => audit.packages.find((x) => x.subject === name && x.package === p);
      assert.equal(row('openssl')?.status, openssl);
      assert.equal(row('libc6')?.status, libc6);
      assert.equal(row('openssl')?.security, true);
      assert.equal(row('libc6')?.security, false);
    });
  }

  it('a failed subject carries its error; the baseline and the summary count each state', () => {
    assert.match(audit.subjects.find((s) => s.subject === 'web-5')?.error ?? '', /openssl broke/);
    assert.deepEqual(audit.baselines, [
      {
        baseline: 'sec',
        subjects: 6,
        compliant: 2,
        nonCompliant: 2,
        pendingReboot: 1,
        failed: 1,
        notApplicable: 0,
      },
    ]);
    const report = buildReport(['patches'], input, { generatedAt: 'x', specHash: 'y' });
    // Findings: web-1 openssl, web-2 libc6, web-3 both, web-5 both.
    assert.deepEqual(
      report.findings.map((f) =>
        f.kind === 'patches' ? `${f.subject} ${f.package} ${f.status}` : '',
      ),
      [
        'web-1 openssl outdated',
        'web-2 libc6 missing',
        'web-3 libc6 pending-reboot',
        'web-3 openssl pending-reboot',
        'web-5 libc6 pending-reboot',
        'web-5 openssl failed',
      ],
    );
    assert.equal(report.summary.patches?.securityFindings, 3);
    assert.equal(report.summary.patches?.otherFindings, 3);
    const text = renderAuditText(report);
    assert.match(
      text,
      /Patches: 2 of 6 subjects compliant, 2 below their baseline, 1 pending a reboot, 1 whose last patch failed, 0 not applicable\.\nUpdates outstanding: 3 security, 3 other\./,
    );
    assert.match(
      text,
      /instance web-5: its last patch failed; openssl is not installed below 3\.0\.15-1~deb12u1 \(baseline sec\) \(security\)/,
    );
  });

  it('the CSV has a classification column: security or other, per the baseline', () => {
    const report = buildReport(['patches'], input, { generatedAt: 'x', specHash: 'y' });
    const rows = parse(renderAuditCsv(report), { columns: true }) as Array<Record<string, string>>;
    assert.deepEqual(Object.keys(rows[0] ?? {}), [...CSV_COLUMNS.patches]);
    assert.equal(CSV_COLUMNS.patches.at(-1), 'classification');
    assert.deepEqual(
      rows
        .filter((r) => r.subject === 'web-5')
        .map((r) => [r.package, r.installed, r.status, r.classification]),
      [
        ['libc6', REQUIRED.libc6, 'pending-reboot', 'other'],
        ['openssl', '', 'failed', 'security'],
      ],
    );
  });
});
