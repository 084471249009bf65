// The audit report's tables, defined once: title, columns and rows. text, md and html render
// the same tables (each in its own syntax); CSV has its own, machine-named columns (csv.ts).
import type { AuditReport } from '../../../audit/report.js';

export type Cell = string | number | null;

export interface AuditTable {
  readonly title: string;
  readonly head: readonly string[];
  readonly rows: ReadonlyArray<readonly Cell[]>;
  /** The column holding a status word, which html colours. */
  readonly statusColumn?: number;
}

const words = (items: readonly string[]) => items.join(' ');

export function licenseTables(report: AuditReport): AuditTable[] {
  const l = report.licenses;
  if (!l) return [];
  return [
    {
      title: 'License pools',
      head: [
        'Pool',
        'Product',
        'Metric',
        'Owned',
        'Used',
        'Needed',
        'Available',
        'Shortfall',
        'Status',
      ],
      rows: l.pools.map((p) => [
        p.pool,
        p.product,
        p.metric,
        p.entitlement,
        p.used,
        p.needed,
        p.available,
        p.shortfall,
        p.status,
      ]),
      statusColumn: 8,
    },
    {
      title: 'Counted hosts',
      head: [
        'Pool',
        'Host',
        'Cores',
        'Sockets',
        'Units',
        'Assigned',
        'Runs',
        'Failover target for',
      ],
      rows: l.hosts.map((h) => [
        h.pool,
        h.host,
        h.cores,
        h.sockets,
        h.units,
        h.assigned ? 'yes' : 'no',
        words(h.runs),
        words(h.failoverFor),
      ]),
    },
    {
      title: 'Licensed instances',
      head: ['Instance', 'Pools'],
      rows: l.instances.map((i) => [i.instance, words(i.pools)]),
    },
  ];
}

export function patchTables(report: AuditReport): AuditTable[] {
  const p = report.patches;
  if (!p) return [];
  return [
    {
      title: 'Patch baselines',
      head: [
        'Baseline',
        'Subjects',
        'Compliant',
        'Non-compliant',
        'Pending reboot',
        'Failed',
        'Not applicable',
      ],
      rows: p.baselines.map((b) => [
        b.baseline,
        b.subjects,
        b.compliant,
        b.nonCompliant,
        b.pendingReboot,
        b.failed,
        b.notApplicable,
      ]),
    },
    {
      title: 'Updates needed',
      head: [
        'Package',
        'Baseline',
        'Class',
        'Required',
        'Outdated',
        'Missing',
        'Failed',
        'Pending reboot',
        'Subjects checked',
      ],
      rows: p.byPackage
        .filter((x) => x.outdated + x.missing + x.failed + x.pendingReboot > 0)
        .map((x) => [
          x.package,
          x.baseline,
          x.security ? 'security' : 'other',
          x.required,
          x.outdated,
          x.missing,
          x.failed,
          x.pendingReboot,
          x.subjects,
        ]),
    },
    {
      title: 'Subjects',
      head: [
        'Subject',
        'Kind',
        'Host',
        'Baseline',
        'OS',
        'Status',
        'Compliant',
        'Outdated',
        'Missing',
        'Pending reboot',
        'Failed',
      ],
      rows: p.subjects.map((x) => [
        x.subject,
        x.kind,
        x.host,
        x.baseline,
        x.os,
        x.status,
        x.compliant,
        x.outdated,
        x.missing,
        x.pendingReboot,
        x.failed,
      ]),
      statusColumn: 5,
    },
  ];
}

export function failoverTables(report: AuditReport): AuditTable[] {
  const f = report.failover;
  if (!f || f.tolerate === 0) return [];
  return [
    {
      title: `Failure scenarios (any ${f.tolerate} ${f.domain} fails)`,
      head: ['Failure of', 'Hosts', 'Protected', 'Covered', 'Status', 'Short of'],
      rows: f.scenarios.map((x) => [
        x.domain,
        words(x.hosts),
        x.protected,
        x.covered,
        x.status,
        words(x.overloads.map((o) => `${o.host}:${o.resource}:${o.needed}>${o.free}`)),
      ]),
      statusColumn: 4,
    },
    {
      title: 'Protected instances',
      head: ['Instance', 'Host', 'Domain', 'Failover host', 'Failover domain', 'Status'],
      rows: f.instances.map((i) => [
        i.instance,
        i.host,
        i.domain,
        i.failoverHost,
        i.failoverDomain,
        i.status,
      ]),
      statusColumn: 5,
    },
    ...(f.instances.some((i) => i.replica)
      ? [
          {
            title: 'Replicas of protected VMs',
            head: ['Instance', 'Replica on', 'Consistent at', 'RPO s', 'Max RPO s', 'Status'],
            rows: f.instances
              .filter((i) => i.replica)
              .map((i) => [
                i.instance,
                i.replica?.target ?? null,
                i.replica?.consistentAt == null
                  ? null
                  : new Date(i.replica.consistentAt).toISOString(),
                i.replica?.rpoSeconds ?? null,
                i.replica?.maxRpoSeconds ?? null,
                i.status,
              ]),
            statusColumn: 5,
          },
        ]
      : []),
    {
      title: 'Standby reserve per host',
      head: ['Host', 'Domain', 'Reserved vCPU', 'Reserved MiB', 'Free vCPU', 'Free MiB'],
      rows: f.reserves.map((r) => [
        r.host,
        r.domain,
        r.reserved.vcpus,
        r.reserved.memoryMiB,
        r.free.vcpus,
        r.free.memoryMiB,
      ]),
    },
  ];
}
