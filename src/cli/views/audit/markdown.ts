// The audit report as GitHub-flavoured Markdown: for a pull request comment or
// $GITHUB_STEP_SUMMARY. Findings first, then the tables; every cell escaped.
import { type AuditReport, describeFinding } from '../../../audit/report.js';
import { failoverTables, licenseTables, patchTables } from './tables.js';

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
  // A pull request comment stays short: the pools, what needs updating, the scenarios; the
  // long tables (counted hosts, subjects) fold away.
  const folded = new Set(['Counted hosts', 'Subjects', 'Protected instances']);
  const shown = new Set(['License pools', 'Patch baselines', 'Updates needed', ...folded]);
  for (const t of [...licenseTables(report), ...patchTables(report), ...failoverTables(report)]) {
    if (t.rows.length === 0 || !(shown.has(t.title) || t.title.startsWith('Failure scenarios')))
      continue;
    const body = mdTable(t.head, t.rows);
    if (folded.has(t.title))
      out.push(`<details><summary>${t.title}</summary>`, '', body, '', '</details>', '');
    else out.push(`### ${t.title}`, '', body, '');
  }
  return `${out.join('\n').trimEnd()}\n`;
}
