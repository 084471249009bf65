// How `vfleet schedule` shows a placement: tables for people, the Placement itself as JSON.
import type { Explanation, Placement, Unplaceable } from '../../model/placement.js';
import { table } from './table.js';

const round = (n: number) => Math.round(n * 100) / 100;

/** `insufficient-memory (3 hosts), anti-affinity (1 host)`: the commonest reason first. */
export function formatReasons(reasons: Unplaceable['reasons']): string {
  return (Object.entries(reasons) as Array<[string, number]>)
    .sort(([, a], [, b]) => b - a)
    .map(([reason, hosts]) => `${reason} (${hosts} host${hosts === 1 ? '' : 's'})`)
    .join(', ');
}

export function renderPlacementJson(
  placement: Placement,
  explanation: Explanation | undefined,
): string {
  return `${JSON.stringify(explanation ? { ...placement, explanation } : placement, null, 2)}\n`;
}

export function renderPlacementText(fleetName: string, placement: Placement): string {
  const out: string[] = [];
  const total = placement.placements.length + placement.unplaceable.length;
  const f = placement.failover;
  out.push(
    `Fleet ${fleetName}: ${placement.placements.length} of ${total} instances placed` +
      (f.tolerate > 0
        ? `; failover: ${f.covered} of ${f.protected} protected instances covered (any ${f.tolerate} ${f.domain} may fail)`
        : '; failover: off'),
    '',
  );
  out.push(
    table(
      ['INSTANCE', 'GROUP', 'HOST', 'FAILOVER HOST'],
      placement.placements.map((p) => [p.instance, p.group, p.host, p.failoverHost ?? '-']),
    ),
    '',
  );
  out.push(
    table(
      ['HOST', 'VCPUS', 'MEMORY MIB', 'DISK GIB', 'RESERVED VCPUS', 'RESERVED MIB', 'LICENSED FOR'],
      placement.hosts.map((h) => [
        h.name,
        round(h.used.vcpus),
        h.used.memoryMiB,
        h.used.diskGiB,
        round(h.reserved.vcpus),
        h.reserved.memoryMiB,
        h.licenses.join(', ') || '-',
      ]),
    ),
    '',
  );
  if (placement.licenses.length > 0) {
    out.push(
      table(
        ['LICENSE POOL', 'METRIC', 'USED', 'ENTITLEMENT', 'AVAILABLE'],
        placement.licenses.map((l) => [
          l.pool,
          l.metric,
          l.used,
          l.entitlement,
          l.entitlement - l.used,
        ]),
      ),
      '',
    );
  }
  if (placement.unplaceable.length > 0) {
    const n = placement.unplaceable.length;
    out.push(`${n} instance${n === 1 ? '' : 's'} could not be placed:`);
    for (const u of placement.unplaceable) {
      out.push(`  ${u.instance}: ${formatReasons(u.reasons)}`);
    }
    out.push('');
  }
  return out.join('\n');
}

export function renderExplanationText(
  explanation: Explanation | undefined,
  instance: string,
): string {
  if (!explanation) return `No instance ${instance} in this fleet.\n`;
  const chosen = explanation.hosts.find((h) => h.chosen);
  const lines = [
    `${explanation.instance} (group ${explanation.group}, strategy ${explanation.strategy}): ` +
      (chosen ? `${explanation.kept ? 'stays on' : 'placed on'} ${chosen.host}` : 'not placed'),
    '',
    table(
      ['HOST', 'VERDICT', 'FREE AFTER (MIB-EQ)', 'LICENSE UNITS'],
      explanation.hosts.map((h) => [
        h.host,
        h.ok ? (h.chosen ? 'ok, chosen' : 'ok') : (h.reason ?? ''),
        h.freeAfter ?? '-',
        h.licenseUnits ?? '-',
      ]),
    ),
    '',
  ];
  return lines.join('\n');
}
