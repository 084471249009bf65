// The audit report as JUnit XML, for CI systems that show test results: one test suite per
// audit, one test case per thing checked, and exactly one failing test case per finding.
import { type AuditReport, describeFinding, type Finding } from '../../../audit/report.js';

/** Text for an XML attribute or element: escaped, and characters XML 1.0 forbids dropped. */
function xml(text: string | number): string {
  return String(text)
    .replace(/[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

interface Case {
  readonly classname: string;
  readonly name: string;
  readonly failure?: Finding;
}

function suite(name: string, timestamp: string, cases: readonly Case[]): string {
  const failures = cases.filter((c) => c.failure).length;
  const body = cases.map((c) => {
    const open = `    <testcase classname="${xml(c.classname)}" name="${xml(c.name)}" time="0"`;
    if (!c.failure) return `${open}/>`;
    const message = describeFinding(c.failure);
    return `${open}>\n      <failure type="${xml(c.failure.kind)}" message="${xml(message)}">${xml(JSON.stringify(c.failure))}</failure>\n    </testcase>`;
  });
  return [
    `  <testsuite name="${xml(name)}" tests="${cases.length}" failures="${failures}" errors="0" skipped="0" timestamp="${xml(timestamp)}" time="0">`,
    ...body,
    '  </testsuite>',
  ].join('\n');
}

export function renderAuditJunit(report: AuditReport): string {
  const at = report.generatedAt;
  const suites: string[] = [];
  const fleet = report.fleet;
  if (report.licenses) {
    const short = new Map(
      report.findings.flatMap((f) => (f.kind === 'licenses' ? [[f.pool, f] as const] : [])),
    );
    suites.push(
      suite(
        `vfleet.audit.licenses.${fleet}`,
        at,
        report.licenses.pools.map((p) => ({
          classname: `licenses.${fleet}`,
          name: `pool ${p.pool} within its entitlement`,
          ...(short.has(p.pool) ? { failure: short.get(p.pool) } : {}),
        })),
      ),
    );
  }
  if (report.patches) {
    const found = new Map(
      report.findings.flatMap((f) =>
        f.kind === 'patches'
          ? [[`${f.subjectKind}\u0000${f.subject}\u0000${f.package}`, f] as const]
          : [],
      ),
    );
    suites.push(
      suite(
        `vfleet.audit.patches.${fleet}`,
        at,
        report.patches.packages.map((r) => {
          const failure = found.get(`${r.kind}\u0000${r.subject}\u0000${r.package}`);
          return {
            classname: `patches.${fleet}.${r.kind}.${r.subject}`,
            name: `${r.package} >= ${r.required}`,
            ...(failure ? { failure } : {}),
          };
        }),
      ),
    );
  }
  if (report.failover) {
    const found = new Map(
      report.findings.flatMap((f) => (f.kind === 'failover' ? [[f.instance, f] as const] : [])),
    );
    suites.push(
      suite(
        `vfleet.audit.failover.${fleet}`,
        at,
        report.failover.instances.map((i) => ({
          classname: `failover.${fleet}`,
          name: `${i.instance} can fail over`,
          ...(found.has(i.instance) ? { failure: found.get(i.instance) } : {}),
        })),
      ),
    );
  }
  const tests =
    (report.licenses?.pools.length ?? 0) +
    (report.patches?.packages.length ?? 0) +
    (report.failover?.instances.length ?? 0);
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="vfleet audit" tests="${tests}" failures="${report.findings.length}" errors="0" time="0">`,
    ...suites,
    '</testsuites>',
    '',
  ].join('\n');
}
