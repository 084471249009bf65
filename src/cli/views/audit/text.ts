// The audit report for a terminal: a summary line per audit, the findings, then the tables.

import { type AuditReport, describeFinding } from '../../../audit/report.js';
import { revisionLine } from '../../../model/source.js';
import { table } from '../table.js';
import { type AuditTable, failoverTables, licenseTables, patchTables } from './tables.js';

function indent(text: string): string {
  return text
    .split('\n')
    .map((line) => (line ? `  ${line}` : line))
    .join('\n');
}

function block(t: AuditTable): string[] {
  if (t.rows.length === 0) return [];
  const rows = t.rows.map((r) => r.map((v) => (v === null || v === '' ? '-' : v)));
  return [
    `${t.title}:`,
    indent(
      table(
        t.head.map((h) => h.toUpperCase()),
        rows,
      ),
    ),
    '',
  ];
}

export function summaryLines(report: AuditReport): string[] {
  const s = report.summary;
  const out: string[] = [];
  if (s.licenses) {
    out.push(
      `Licenses: ${s.licenses.compliant} of ${s.licenses.pools} pools compliant, ${s.licenses.shortfall} short.`,
    );
  }
  if (s.patches) {
    out.push(
      `Patches: ${s.patches.compliant} of ${s.patches.subjects} subjects compliant, ${s.patches.nonCompliant} below their baseline, ${s.patches.pendingReboot} pending a reboot, ${s.patches.failed} whose last patch failed, ${s.patches.notApplicable} not applicable.`,
    );
    if (s.patches.findings > 0) {
      out.push(
        `Updates outstanding: ${s.patches.securityFindings} security, ${s.patches.otherFindings} other.`,
      );
    }
  }
  if (s.failover) {
    out.push(
      s.failover.tolerate === 0
        ? 'Failover: not configured (spec.failover.tolerate is 0).'
        : `Failover: ${s.failover.covered} of ${s.failover.protected} protected instances covered; ${s.failover.scenarios - s.failover.scenariosNotCovered} of ${s.failover.scenarios} failure scenarios covered.`,
    );
    const degraded = report.failover?.degraded;
    if (degraded) {
      const hosts = Object.entries(degraded.hosts)
        .map(([h, health]) => `${h} ${health}`)
        .join(', ');
      out.push(
        `Degraded: ${hosts} (${report.failover?.domain} ${degraded.domains.join(', ')}); the coverage above is what is left for a further failure.`,
      );
    }
  }
  return out;
}

export function renderAuditText(report: AuditReport): string {
  const out: string[] = [
    `vfleet audit of fleet ${report.fleet} (${report.source}), ${report.generatedAt}`,
    ...(report.revision ? [`Source: ${revisionLine(report.revision)}`] : []),
    `spec sha256 ${report.specHash}`,
    '',
    ...summaryLines(report),
    '',
  ];
  if (report.findings.length === 0) out.push('No findings.', '');
  else {
    out.push(`Findings (${report.findings.length}):`);
    for (const f of report.findings) out.push(`  ! ${describeFinding(f)}`);
    out.push('');
  }
  for (const t of [...licenseTables(report), ...patchTables(report), ...failoverTables(report)]) {
    out.push(...block(t));
  }
  const u = report.patches?.unaudited;
  if (u && u.instances + u.hosts > 0) {
    out.push(`Not audited (no patch baseline): ${u.instances} instances, ${u.hosts} hosts.`, '');
  }
  return `${out.join('\n').trimEnd()}\n`;
}
