// The audit report as CSV (RFC 4180, by csv-stringify), one table per audit; the columns are
// documented in docs/audits.md. A spreadsheet wants one table, so CSV takes one audit at a time.
import { stringify } from 'csv-stringify/sync';
import type { AuditKind, AuditReport } from '../../../audit/report.js';
import { VfleetError } from '../../../model/errors.js';
import { licenseTables } from './tables.js';

export const CSV_COLUMNS: Readonly<Record<AuditKind, readonly string[]>> = {
  licenses: [
    'pool',
    'product',
    'metric',
    'entitlement',
    'used',
    'needed',
    'available',
    'shortfall',
    'status',
  ],
  patches: [
    'subject',
    'subject_kind',
    'host',
    'group',
    'baseline',
    'package',
    'installed',
    'required',
    'status',
    'classification',
  ],
  failover: ['instance', 'group', 'host', 'domain', 'failover_host', 'failover_domain', 'status'],
};

export function renderAuditCsv(report: AuditReport): string {
  if (report.kinds.length !== 1) {
    throw new VfleetError(
      'csv-one-audit',
      `CSV holds one table: run one audit (licenses, patches or failover) with --format csv, not ${report.kinds.join(', ')}`,
      { exitCode: 1 },
    );
  }
  const kind = report.kinds[0] as AuditKind;
  const rows: Array<Array<string | number | null>> = [];
  if (kind === 'licenses') {
    // The same rows as the License pools table of text, md and html.
    rows.push(...(licenseTables(report)[0]?.rows ?? []).map((r) => [...r]));
  } else if (kind === 'patches') {
    const subjects = new Map(
      (report.patches?.subjects ?? []).map((s) => [`${s.kind}\u0000${s.subject}`, s]),
    );
    for (const r of report.patches?.packages ?? []) {
      const s = subjects.get(`${r.kind}\u0000${r.subject}`);
      rows.push([
        r.subject,
        r.kind,
        s?.host ?? '',
        s?.group ?? '',
        r.baseline,
        r.package,
        r.installed,
        r.required,
        r.status,
        r.security ? 'security' : 'other',
      ]);
    }
    // Subjects the baseline does not apply to have no package rows: one row each, so none is lost.
    for (const s of report.patches?.subjects ?? []) {
      if (s.status === 'not-applicable')
        rows.push([
          s.subject,
          s.kind,
          s.host,
          s.group ?? '',
          s.baseline,
          '',
          '',
          '',
          'not-applicable',
          '',
        ]);
    }
  } else {
    for (const i of report.failover?.instances ?? []) {
      rows.push([
        i.instance,
        i.group,
        i.host,
        i.domain,
        i.failoverHost,
        i.failoverDomain,
        i.status,
      ]);
    }
  }
  return stringify(
    rows.map((r) => r.map((v) => (v === null ? '' : v))),
    {
      header: true,
      columns: [...CSV_COLUMNS[kind]],
      record_delimiter: 'unix',
    },
  );
}
