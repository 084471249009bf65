// `vfleet audit` as a CI job runs it: every format on fleet.yaml as planned, byte-identical under
// SOURCE_DATE_EPOCH, the exit codes --fail-on gates, bad input refused in one line, and the
// observed audits after a real apply (embedded hosts in a private Redis).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, describe, it } from 'node:test';
import { parse as parseCsv } from 'csv-parse/sync';
import { CSV_COLUMNS } from '../../src/cli/views/audit/csv.js';
import { fromRoot } from '../helpers/paths.js';

const bin = fromRoot('bin', 'vfleet.js');
const EPOCH = '1700000000';

function vfleet(args: string[], cwd = fromRoot(), env: NodeJS.ProcessEnv = {}) {
  const result = spawnSync(process.execPath, [bin, ...args], {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, VFLEET_EMBEDDED_BOOT_MS: '0', SOURCE_DATE_EPOCH: EPOCH, ...env },
    timeout: 60_000,
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

const planned = (kind: string, format: string, ...extra: string[]) =>
  vfleet(['audit', kind, '--planned', '--format', format, ...extra]);

describe('vfleet audit --planned on fleet.yaml', () => {
  it('json: the envelope, the findings, generatedAt from SOURCE_DATE_EPOCH; exit 2 for findings', () => {
    const r = planned('all', 'json');
    assert.equal(r.code, 2, r.stderr);
    const report = JSON.parse(r.stdout);
    assert.deepEqual(Object.keys(report).slice(0, 9), [
      'formatVersion',
      'generatedAt',
      'revision',
      'fleet',
      'specHash',
      'source',
      'kinds',
      'summary',
      'findings',
    ]);
    assert.equal(report.generatedAt, '2023-11-14T22:13:20.000Z');
    // the spec's revision: a file, or the commit of the work tree it is in
    assert.ok(['file', 'git'].includes(report.revision.kind));
    assert.match(report.revision.path, /fleet\.yaml$/);
    assert.equal(report.specHash.length, 64);
    assert.equal(report.source, 'planned');
    assert.equal(report.findings.length, 12);
    for (const f of report.findings) {
      assert.deepEqual(Object.keys(f).sort(), [
        'baseline',
        'installed',
        'kind',
        'package',
        'required',
        'security',
        'status',
        'subject',
        'subjectKind',
      ]);
    }
    assert.deepEqual(report.summary.licenses, {
      pools: 3,
      compliant: 3,
      shortfall: 0,
      findings: 0,
    });
    assert.equal(report.summary.failover.covered, 15);
  });

  it('every format is byte-identical run to run under SOURCE_DATE_EPOCH', () => {
    for (const [kind, format] of [
      ['all', 'text'],
      ['all', 'md'],
      ['all', 'json'],
      ['patches', 'csv'],
      ['all', 'html'],
      ['all', 'junit'],
    ] as const) {
      const first = planned(kind, format);
      const second = planned(kind, format);
      assert.ok(first.stdout.length > 200, `${format} is not empty`);
      assert.equal(first.stdout, second.stdout, `${format} differs between runs`);
    }
  });

  it('csv: the documented columns, one row per subject and package', () => {
    const patches = parseCsv(planned('patches', 'csv').stdout, { columns: true }) as Array<
      Record<string, string>
    >;
    assert.deepEqual(Object.keys(patches[0] ?? {}), CSV_COLUMNS.patches);
    assert.equal(patches.length, 30 * 3); // 21 debian instances and 9 hosts, 3 packages each
    assert.deepEqual(
      patches.find((r) => r.subject === 'web-0' && r.package === 'openssl'),
      {
        subject: 'web-0',
        subject_kind: 'instance',
        host: patches.find((r) => r.subject === 'web-0')?.host,
        group: 'web',
        baseline: 'debian-12-security',
        package: 'openssl',
        installed: '3.0.13-1~deb12u1',
        required: '3.0.15-1~deb12u1',
        status: 'outdated',
        classification: 'other',
      },
    );
    const licenses = parseCsv(planned('licenses', 'csv').stdout, { columns: true }) as Array<
      Record<string, string>
    >;
    assert.deepEqual(Object.keys(licenses[0] ?? {}), CSV_COLUMNS.licenses);
    assert.deepEqual(
      licenses.map((r) => [r.pool, r.needed, r.entitlement, r.status]),
      [
        ['windows-datacenter', '32', '96', 'compliant'],
        ['rhel-vdc', '2', '4', 'compliant'],
        ['backup-agent', '3', '10', 'compliant'],
      ],
    );
    const failover = parseCsv(planned('failover', 'csv').stdout, { columns: true }) as Array<
      Record<string, string>
    >;
    assert.equal(failover.length, 15);
    assert.ok(failover.every((r) => r.status === 'covered' && r.failover_domain !== r.domain));
    const all = planned('all', 'csv');
    assert.equal(all.code, 1);
    assert.match(all.stderr, /^vfleet: CSV holds one table/);
  });

  it('junit: one failing test case per finding', () => {
    const xml = planned('all', 'junit').stdout;
    assert.match(
      xml,
      /^<\?xml version="1.0" encoding="UTF-8"\?>\n<testsuites name="vfleet audit" tests="\d+" failures="12"/,
    );
    assert.equal((xml.match(/<failure /g) ?? []).length, 12);
    assert.equal((xml.match(/<testsuite /g) ?? []).length, 3);
    // 3 pools + 90 package checks + 15 protected instances
    assert.equal((xml.match(/<testcase /g) ?? []).length, 3 + 90 + 15);
    assert.match(
      xml,
      /<testcase classname="patches\.lab\.instance\.web-0" name="openssl &gt;= 3\.0\.15-1~deb12u1" time="0">\n {6}<failure type="patches"/,
    );
  });

  it('md for a pull request: the summary table, findings, tildes escaped', () => {
    const md = planned('all', 'md').stdout;
    assert.match(md, /^## vfleet audit: lab \(planned\)\n/);
    assert.match(md, /\| ❌ Patches \| 24 of 30 subjects compliant/);
    assert.match(md, /\| ✅ Licenses \| 3 of 3 pools compliant \|/);
    assert.match(md, /openssl 3\.0\.13-1\\~deb12u1 is below/);
  });

  it('--fail-on gates only the audits it names; --out writes the file', () => {
    assert.equal(planned('all', 'text', '--fail-on', 'licenses,failover').code, 0);
    assert.equal(planned('all', 'text', '--fail-on', 'none').code, 0);
    assert.equal(planned('all', 'text', '--fail-on', 'patches').code, 2);
    assert.equal(planned('licenses', 'text').code, 0);
    const dir = mkdtempSync(`${tmpdir()}/vfleet-audit-`);
    try {
      const r = planned('all', 'html', '--out', `${dir}/audit.html`);
      assert.equal(r.code, 2);
      assert.match(
        r.stdout,
        /^Wrote the licenses, patches, failover audit \(html\) to .*audit\.html: 12 findings\.\n$/,
      );
      assert.match(readFileSync(`${dir}/audit.html`, 'utf8'), /^<!DOCTYPE html>/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('bad input: one line, exit 1, never a stack trace', () => {
    for (const [args, env, message] of [
      [
        ['audit', 'licences', '--planned'],
        {},
        /"licences" is not an audit; use licenses, patches, failover or all/,
      ],
      [
        ['audit', 'all', '--planned', '--fail-on', 'patch'],
        {},
        /--fail-on: "patch" is not an audit/,
      ],
      [
        ['audit', 'all', '--planned'],
        { SOURCE_DATE_EPOCH: 'yesterday' },
        /SOURCE_DATE_EPOCH must be a whole number of seconds/,
      ],
      [['audit', 'all', '--planned', '-f', 'missing.yaml'], {}, /no such file/],
    ] as const) {
      const r = vfleet([...args], fromRoot(), env);
      assert.equal(r.code, 1, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, /\n\s+at /);
    }
  });
});

describe('vfleet audit on the observed state', () => {
  const dir = mkdtempSync(`${tmpdir()}/vfleet-audit-observed-`);
  copyFileSync(fromRoot('fleet.yaml'), `${dir}/fleet.yaml`);
  cpSync(fromRoot('examples', 'inventories'), `${dir}/examples/inventories`, { recursive: true });
  after(() => {
    vfleet(['down'], dir);
    rmSync(dir, { recursive: true, force: true });
  });

  it('after apply: patched instances comply; a lowered entitlement and a lost failover host are findings', () => {
    const apply = vfleet(['apply', '--auto-approve'], dir);
    assert.equal(apply.code, 0, apply.stderr);
    const patches = vfleet(['audit', 'patches', '--format', 'json'], dir);
    assert.equal(patches.code, 0, patches.stdout);
    const report = JSON.parse(patches.stdout);
    assert.equal(report.source, 'observed');
    assert.equal(report.summary.patches.compliant, 30);
    assert.deepEqual(report.findings, []);

    // The true-up: the spec now owns fewer Datacenter cores than the fleet runs on.
    const spec = readFileSync(`${dir}/fleet.yaml`, 'utf8');
    writeFileSync(`${dir}/fleet.yaml`, spec.replace('entitlement: 96', 'entitlement: 16'));
    const licenses = vfleet(['audit', 'licenses', '--format', 'json'], dir);
    assert.equal(licenses.code, 2, licenses.stderr);
    assert.deepEqual(JSON.parse(licenses.stdout).findings, [
      {
        kind: 'licenses',
        pool: 'windows-datacenter',
        metric: 'host-core',
        needed: 32,
        entitlement: 16,
        shortfall: 16,
      },
    ]);

    // A failover host leaves the spec (renamed): the instances that failed over there, and
    // only they, have no target any more. Which host that is, is the scheduler's choice.
    const failover = vfleet(
      ['audit', 'failover', '--format', 'json', '--fail-on', 'failover'],
      dir,
    );
    assert.equal(failover.code, 0, failover.stdout);
    const protectedOnes = JSON.parse(failover.stdout).failover.instances as Array<{
      instance: string;
      failoverHost: string | null;
    }>;
    const target = protectedOnes.find((i) => i.failoverHost !== null)?.failoverHost;
    assert.ok(target);
    const renamed = spec.replace(
      new RegExp(`^ {4}- name: ${target}\n`, 'm'),
      `    - name: ${target}-renamed\n`,
    );
    assert.notEqual(renamed, spec);
    writeFileSync(`${dir}/fleet.yaml`, renamed);
    const lost = vfleet(['audit', 'failover', '--format', 'json'], dir);
    assert.equal(lost.code, 2, lost.stderr);
    const findings = JSON.parse(lost.stdout).findings as Array<{
      instance: string;
      status: string;
      failoverHost: string;
    }>;
    assert.deepEqual(
      findings.map((f) => f.instance).sort(),
      protectedOnes
        .filter((i) => i.failoverHost === target)
        .map((i) => i.instance)
        .sort(),
    );
    assert.ok(findings.every((f) => f.status === 'unknown-host' && f.failoverHost === target));
  });
});
