// How `vfleet status` shows app/status.ts's FleetStatus: tables for people, JSON for tools.
import type { FleetStatus } from '../../app/status.js';
import { jsonDocument } from './json.js';
import { table } from './table.js';

export function renderStatusJson(status: FleetStatus): string {
  const { unplaceable: _, ...shown } = status;
  return jsonDocument(shown, 2);
}

export function renderStatusText(status: FleetStatus, now: number): string {
  const lines = [
    `Fleet ${status.fleet} (state version ${status.stateVersion}, Redis ${status.redis})\n`,
    table(
      ['HOST', 'ENGINE', 'HEALTH', 'HEARTBEAT', 'INSTANCES', 'VCPUS', 'MEMORY MIB'],
      status.hosts.map((h) => [
        h.name,
        h.engine,
        h.health,
        h.lastHeartbeat === null
          ? '-'
          : `${Math.max(0, Math.round((now - h.lastHeartbeat) / 1000))}s ago`,
        h.instances,
        h.vcpus,
        h.memoryMiB,
      ]),
    ),
    '',
    table(
      ['INSTANCE', 'HOST', 'GENERATION', 'STATUS', 'FAILOVER HOST'],
      status.instances.map((i) => [
        i.instance,
        i.host,
        i.generation,
        i.status,
        i.failoverHost ?? '-',
      ]),
    ),
  ];
  const drift = status.drift;
  const changes = drift.create + drift.move + drift.update + drift.patch + drift.destroy;
  const unplaced = status.unplaceable;
  const cannot =
    unplaced === 0
      ? ''
      : ` ${unplaced} instance${unplaced === 1 ? '' : 's'} of the spec cannot be placed.`;
  lines.push(
    changes === 0 && unplaced === 0
      ? '\nNo drift: the fleet matches the spec.'
      : `\nDrift: ${drift.create} to create, ${drift.move} to move, ${drift.update} to update, ${drift.patch} to patch, ${drift.destroy} to destroy (vfleet plan shows them).${cannot}`,
  );
  if (status.warnings.length > 0) {
    lines.push(
      `\nWarnings (the hosts' own facts against the spec):\n${status.warnings.map((w) => `  ! ${w}`).join('\n')}`,
    );
  }
  return lines.join('\n');
}
