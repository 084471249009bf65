// How `vfleet status` shows app/status.ts's FleetStatus: tables for people, JSON for tools.
import type { FleetStatus } from '../../app/status.js';
import { revisionLine } from '../../model/source.js';
import { eventLine } from './events-view.js';
import { jsonDocument } from './json.js';
import { table } from './table.js';

export function renderStatusJson(status: FleetStatus): string {
  const { unplaceable: _, ...shown } = status;
  return jsonDocument(shown, 2);
}

export function renderStatusText(status: FleetStatus): string {
  const s = status.sync;
  const lines = [
    `Fleet ${status.fleet} (state version ${status.stateVersion}, Redis ${status.redis})`,
    `Sync:   ${s.status}, ${s.health}${s.suspended ? ', SUSPENDED' : ''} — ${s.message} (${s.judgedBy === 'controller' ? 'the controller' : 'no controller: judged from here'})`,
    `Source: ${status.source ? `${revisionLine(status.source)}, applied ${new Date(status.source.appliedAt).toISOString()}` : 'no revision recorded yet'}`,
    ...(s.target && s.target.commit !== status.source?.commit
      ? [`Target: ${revisionLine(s.target)}`]
      : []),
    ...(s.suspended
      ? [`Suspended by ${s.suspended.by}: ${s.suspended.reason} (vfleet resume)`]
      : []),
    '',
    table(
      ['HOST', 'ENGINE', 'HEALTH', 'LEASE AGE', 'RUNNING', 'INSTANCES', 'VCPUS', 'MEMORY MIB'],
      status.hosts.map((h) => [
        h.name,
        h.engine,
        h.fault ? `${h.health} (${h.fault})` : h.health,
        h.leaseAgeMs === null ? '-' : `${(h.leaseAgeMs / 1000).toFixed(1)}s`,
        h.running === null ? '?' : h.running.length,
        h.instances,
        h.vcpus,
        h.memoryMiB,
      ]),
    ),
    '',
    table(
      ['INSTANCE', 'HOST', 'GENERATION', 'STATUS', 'FAILOVER HOST', 'SYNC', 'HEALTH'],
      status.instances.map((i) => [
        i.instance,
        i.host,
        i.generation,
        i.status,
        i.failoverHost ?? '-',
        i.sync,
        i.health,
      ]),
    ),
  ];
  const replicated = status.instances.filter((i) => i.replication !== undefined);
  if (replicated.length > 0) {
    lines.push(
      '',
      table(
        ['REPLICATED VM', 'REPLICA ON', 'CONSISTENT AT', 'RPO', 'MAX RPO', 'STATE', 'LAST SYNC'],
        replicated.map((i) => {
          const r = i.replication as NonNullable<typeof i.replication>;
          return [
            i.instance,
            r.target,
            r.consistentAt === null ? '-' : new Date(r.consistentAt).toISOString(),
            r.rpoSeconds === null ? '-' : `${r.rpoSeconds}s`,
            `${r.maxRpoSeconds}s`,
            r.error ? `${r.state}: ${r.error}` : r.state,
            r.lastKind === null ? '-' : `${r.lastKind}, ${bytes(r.lastBytes)}`,
          ];
        }),
      ),
    );
  }
  const notOk = status.hosts.filter((h) => h.health !== 'ok' && h.health !== 'draining');
  if (notOk.length > 0) {
    lines.push(
      `\nHosts not ok (${notOk[0]?.judgedBy === 'controller' ? 'judged by the controller' : 'no controller running: judged from here'}):`,
      ...notOk.map(
        (h) =>
          `  ${h.name}: ${h.health}${h.leaseAgeMs === null ? '' : `, lease ${(h.leaseAgeMs / 1000).toFixed(1)}s old`}; its ${h.instances} recorded instance${h.instances === 1 ? ' is' : 's are'} unknown`,
      ),
    );
  }
  const drift = status.drift;
  const changes = drift.create + drift.move + drift.update + drift.patch + drift.destroy;
  const unplaced = status.unplaceable;
  const cannot =
    unplaced === 0
      ? ''
      : ` ${unplaced} instance${unplaced === 1 ? '' : 's'} of the spec cannot be placed.`;
  lines.push(
    changes === 0 && unplaced === 0 && notOk.length === 0
      ? '\nNo drift: the fleet matches the spec.'
      : changes === 0 && unplaced === 0
        ? '\nNo changes planned, but the hosts above are not ok: what runs there is not confirmed.'
        : `\nDrift: ${drift.create} to create, ${drift.move} to move, ${drift.update} to update, ${drift.patch} to patch, ${drift.destroy} to destroy (vfleet plan shows them).${cannot}`,
  );
  if (status.events.length > 0) {
    lines.push(
      `\nLast events (vfleet events shows more):`,
      ...status.events.map((e) => `  ${eventLine(e)}`),
    );
  }
  if (status.warnings.length > 0) {
    lines.push(
      `\nWarnings (the hosts' own facts against the spec):\n${status.warnings.map((w) => `  ! ${w}`).join('\n')}`,
    );
  }
  return lines.join('\n');
}

function bytes(n: number): string {
  if (n >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(1)} GiB`;
  if (n >= 1024 ** 2) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${Math.round(n / 1024)} KiB`;
}
