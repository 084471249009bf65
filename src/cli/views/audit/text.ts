// The audit report for a terminal: a summary line per audit, the findings, then the tables.
import { type AuditReport, describeFinding } from '../../../audit/report.js';
import { table } from '../table.js';

const dash = (v: string | number | null | undefined) =>
  v === null || v === undefined ? '-' : String(v);
const list = (items: readonly string[]) => (items.length === 0 ? '-' : items.join(' '));
const amounts = (r: { vcpus: number; memoryMiB: number; diskGiB: number }) =>
  `${r.vcpus} vCPU, ${r.memoryMiB} MiB, ${r.diskGiB} GiB`;

export function renderAuditText(report: AuditReport): string {
  const out: string[] = [
    `vfleet audit of fleet ${report.fleet} (${report.source}), ${report.generatedAt}`,
    `spec sha256 ${report.specHash}`,
    '',
  ];
  const s = report.summary;
  if (s.licenses) {
    out.push(
      `Licenses: ${s.licenses.compliant} of ${s.licenses.pools} pools compliant, ${s.licenses.shortfall} short.`,
    );
  }
  if (s.patches) {
    out.push(
      `Patches: ${s.patches.compliant} of ${s.patches.subjects} subjects compliant, ${s.patches.nonCompliant} below their baseline, ${s.patches.notApplicable} not applicable.`,
    );
  }
  if (s.failover) {
    out.push(
      s.failover.tolerate === 0
        ? 'Failover: not configured (spec.failover.tolerate is 0).'
        : `Failover: ${s.failover.covered} of ${s.failover.protected} protected instances covered; ${s.failover.scenarios - s.failover.scenariosNotCovered} of ${s.failover.scenarios} failure scenarios covered.`,
    );
  }
  out.push('');
  if (report.findings.length === 0) out.push('No findings.', '');
  else {
    out.push(`Findings (${report.findings.length}):`);
    for (const f of report.findings) out.push(`  ! ${describeFinding(f)}`);
    out.push('');
  }
  const l = report.licenses;
  if (l) {
    out.push('License pools:');
    out.push(
      indent(
        table(
          ['POOL', 'METRIC', 'OWNED', 'USED', 'NEEDED', 'AVAILABLE', 'SHORTFALL', 'STATUS'],
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
      ),
      '',
    );
    if (l.hosts.length > 0) {
      out.push('Counted hosts:');
      out.push(
        indent(
          table(
            ['POOL', 'HOST', 'CORES', 'SOCKETS', 'UNITS', 'ASSIGNED', 'RUNS', 'FAILOVER FOR'],
            l.hosts.map((h) => [
              h.pool,
              h.host,
              h.cores,
              h.sockets,
              h.units,
              h.assigned ? 'yes' : 'no',
              list(h.runs),
              list(h.failoverFor),
            ]),
          ),
        ),
        '',
      );
    }
    if (l.instances.length > 0) {
      out.push('Licensed instances:');
      out.push(
        indent(
          table(
            ['INSTANCE', 'POOLS'],
            l.instances.map((i) => [i.instance, list(i.pools)]),
          ),
        ),
        '',
      );
    }
  }
  const p = report.patches;
  if (p) {
    out.push('Patch baselines:');
    out.push(
      indent(
        table(
          ['BASELINE', 'SUBJECTS', 'COMPLIANT', 'NON-COMPLIANT', 'NOT APPLICABLE'],
          p.baselines.map((b) => [
            b.baseline,
            b.subjects,
            b.compliant,
            b.nonCompliant,
            b.notApplicable,
          ]),
        ),
      ),
      '',
    );
    if (p.subjects.length > 0) {
      out.push('Subjects:');
      out.push(
        indent(
          table(
            ['SUBJECT', 'KIND', 'HOST', 'BASELINE', 'STATUS', 'COMPLIANT', 'OUTDATED', 'MISSING'],
            p.subjects.map((x) => [
              x.subject,
              x.kind,
              x.host,
              x.baseline,
              x.status,
              x.compliant,
              x.outdated,
              x.missing,
            ]),
          ),
        ),
        '',
      );
    }
    const needed = p.byPackage.filter((x) => x.outdated + x.missing > 0);
    if (needed.length > 0) {
      out.push('Updates needed:');
      out.push(
        indent(
          table(
            ['PACKAGE', 'BASELINE', 'REQUIRED', 'OUTDATED', 'MISSING', 'OF'],
            needed.map((x) => [
              x.package,
              x.baseline,
              x.required,
              x.outdated,
              x.missing,
              x.subjects,
            ]),
          ),
        ),
        '',
      );
    }
    if (p.unaudited.instances + p.unaudited.hosts > 0) {
      out.push(
        `Not audited (no patch baseline): ${p.unaudited.instances} instances, ${p.unaudited.hosts} hosts.`,
        '',
      );
    }
  }
  const f = report.failover;
  if (f && f.tolerate > 0) {
    out.push(`Failure scenarios (any ${f.tolerate} ${f.domain} fails):`);
    out.push(
      indent(
        table(
          ['DOMAIN', 'HOSTS', 'PROTECTED', 'COVERED', 'STATUS', 'SHORT OF'],
          f.scenarios.map((x) => [
            x.domain,
            list(x.hosts),
            x.protected,
            x.covered,
            x.status,
            list(x.overloads.map((o) => `${o.host} ${o.resource} ${o.needed}>${o.free}`)),
          ]),
        ),
      ),
      '',
    );
    out.push('Protected instances:');
    out.push(
      indent(
        table(
          ['INSTANCE', 'HOST', 'DOMAIN', 'FAILOVER HOST', 'FAILOVER DOMAIN', 'STATUS'],
          f.instances.map((i) => [
            i.instance,
            i.host,
            i.domain,
            dash(i.failoverHost),
            dash(i.failoverDomain),
            i.status,
          ]),
        ),
      ),
      '',
    );
    out.push('Standby reserve per host:');
    out.push(
      indent(
        table(
          ['HOST', 'DOMAIN', 'RESERVED', 'FREE'],
          f.reserves.map((r) => [r.host, r.domain, amounts(r.reserved), amounts(r.free)]),
        ),
      ),
      '',
    );
  }
  return `${out.join('\n').trimEnd()}\n`;
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((line) => (line ? `  ${line}` : line))
    .join('\n');
}
