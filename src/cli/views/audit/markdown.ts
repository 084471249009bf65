// The audit report as GitHub-flavoured Markdown: for a pull request comment or
// $GITHUB_STEP_SUMMARY. Findings first, then the tables; every cell escaped.
import { type AuditReport, describeFinding } from '../../../audit/report.js';

function cell(v: string | number | null | undefined): string {
  if (v === null || v === undefined || v === '') return '–';
  return String(v)
    .replace(/\\/g, '\\\\')
    .replace(/\|/g, '\\|')
    .replace(/[<>`*_~[\]]/g, (c) => `\\${c}`)
    .replace(/\r?\n/g, ' ');
}

function mdTable(
  head: readonly string[],
  rows: ReadonlyArray<ReadonlyArray<string | number | null>>,
): string {
  return [
    `| ${head.join(' | ')} |`,
    `| ${head.map(() => '---').join(' | ')} |`,
    ...rows.map((r) => `| ${r.map(cell).join(' | ')} |`),
  ].join('\n');
}

const mark = (ok: boolean) => (ok ? '✅' : '❌');

export function renderAuditMarkdown(report: AuditReport): string {
  const out: string[] = [`## vfleet audit: ${cell(report.fleet)} (${report.source})`, ''];
  const s = report.summary;
  const lines: string[] = [];
  if (s.licenses)
    lines.push(
      `| ${mark(s.licenses.shortfall === 0)} Licenses | ${s.licenses.compliant} of ${s.licenses.pools} pools compliant |`,
    );
  if (s.patches)
    lines.push(
      `| ${mark(s.patches.nonCompliant === 0)} Patches | ${s.patches.compliant} of ${s.patches.subjects} subjects compliant, ${s.patches.notApplicable} not applicable |`,
    );
  if (s.failover)
    lines.push(
      `| ${mark(s.failover.covered === s.failover.protected && s.failover.scenariosNotCovered === 0)} Failover | ${s.failover.covered} of ${s.failover.protected} protected instances covered |`,
    );
  out.push('| | |', '| --- | --- |', ...lines, '');
  out.push(`Generated ${report.generatedAt} from spec \`${report.specHash.slice(0, 12)}\`.`, '');
  if (report.findings.length > 0) {
    out.push(`### Findings (${report.findings.length})`, '');
    for (const f of report.findings) out.push(`- ${cell(describeFinding(f))}`);
    out.push('');
  }
  const l = report.licenses;
  if (l) {
    out.push('### License pools', '');
    out.push(
      mdTable(
        ['Pool', 'Metric', 'Owned', 'Used', 'Needed', 'Available', 'Shortfall', 'Status'],
        l.pools.map((p) => [
          p.pool,
          p.metric,
          p.entitlement,
          p.used,
          p.needed,
          p.available,
          p.shortfall,
          p.status,
        ]),
      ),
      '',
    );
    if (l.hosts.length > 0) {
      out.push('<details><summary>Counted hosts</summary>', '');
      out.push(
        mdTable(
          ['Pool', 'Host', 'Cores', 'Sockets', 'Units', 'Runs', 'Failover for'],
          l.hosts.map((h) => [
            h.pool,
            h.host,
            h.cores,
            h.sockets,
            h.units,
            h.runs.join(' '),
            h.failoverFor.join(' '),
          ]),
        ),
        '',
        '</details>',
        '',
      );
    }
  }
  const p = report.patches;
  if (p) {
    out.push('### Patch baselines', '');
    out.push(
      mdTable(
        ['Baseline', 'Subjects', 'Compliant', 'Non-compliant', 'Not applicable'],
        p.baselines.map((b) => [
          b.baseline,
          b.subjects,
          b.compliant,
          b.nonCompliant,
          b.notApplicable,
        ]),
      ),
      '',
    );
    const needed = p.byPackage.filter((x) => x.outdated + x.missing > 0);
    if (needed.length > 0) {
      out.push('### Updates needed', '');
      out.push(
        mdTable(
          ['Package', 'Baseline', 'Required', 'Outdated', 'Missing'],
          needed.map((x) => [x.package, x.baseline, x.required, x.outdated, x.missing]),
        ),
        '',
      );
    }
  }
  const f = report.failover;
  if (f && f.tolerate > 0) {
    out.push(`### Failure scenarios (any ${f.tolerate} ${cell(f.domain)})`, '');
    out.push(
      mdTable(
        ['Domain', 'Protected', 'Covered', 'Status'],
        f.scenarios.map((x) => [x.domain, x.protected, x.covered, x.status]),
      ),
      '',
    );
  }
  return `${out.join('\n').trimEnd()}\n`;
}
