// The audit report as GitHub-flavoured Markdown: for a pull request comment or
// $GITHUB_STEP_SUMMARY. Findings first, then the tables; every cell escaped.

import { type AuditReport, describeFinding } from '../../../audit/report.js';
import { revisionLine } from '../../../model/source.js';
import { cell, folded, mdTable } from '../markdown.js';
import { failoverTables, licenseTables, patchTables } from './tables.js';

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
      `| ${mark(s.patches.findings === 0)} Patches | ${s.patches.compliant} of ${s.patches.subjects} subjects compliant, ${s.patches.notApplicable} not applicable |`,
    );
  if (s.failover)
    lines.push(
      `| ${mark(s.failover.covered === s.failover.protected && s.failover.scenariosNotCovered === 0)} Failover | ${s.failover.covered} of ${s.failover.protected} protected instances covered |`,
    );
  out.push('| | |', '| --- | --- |', ...lines, '');
  out.push(`Generated ${report.generatedAt} from spec \`${report.specHash.slice(0, 12)}\`.`, '');
  if (report.revision) out.push(`Source: ${cell(revisionLine(report.revision))}`, '');
  if (report.findings.length > 0) {
    out.push(`### Findings (${report.findings.length})`, '');
    for (const f of report.findings) out.push(`- ${cell(describeFinding(f))}`);
    out.push('');
  }
  // A pull request comment stays short: the pools, what needs updating, the scenarios; the
  // long tables (counted hosts, subjects) fold away.
  const foldedTitles = new Set(['Counted hosts', 'Subjects', 'Protected instances']);
  const shown = new Set(['License pools', 'Patch baselines', 'Updates needed', ...foldedTitles]);
  for (const t of [...licenseTables(report), ...patchTables(report), ...failoverTables(report)]) {
    if (t.rows.length === 0 || !(shown.has(t.title) || t.title.startsWith('Failure scenarios')))
      continue;
    const body = mdTable(t.head, t.rows);
    if (foldedTitles.has(t.title)) out.push(folded(t.title, body), '');
    else out.push(`### ${t.title}`, '', body, '');
  }
  return `${out.join('\n').trimEnd()}\n`;
}
