// The checks of `failover.replication` (the fleet's and a group's) that the schema cannot state:
// a maxRpo shorter than its interval (every sync would be late), an interval under a second,
// and replication asked of a group that has nothing to replicate (sandboxes, unprotected groups).
import type { DiagnosticCode } from '../model/diagnostic.js';
import type { FleetDocument } from '../model/fleet-spec.generated.js';
import { durationMs } from './duration.js';
import type { PathSegment } from './yaml-document.js';

type Report = (
  code: DiagnosticCode,
  message: string,
  path: PathSegment[],
  at?: 'key' | 'value',
) => void;

const MIN_INTERVAL_MS = 1_000;

export function checkReplication(
  doc: FleetDocument,
  broken: ReadonlySet<string>,
  error: Report,
  warn: Report,
): void {
  const policy = (
    replication: { interval?: string; maxRpo?: string },
    path: PathSegment[],
  ): void => {
    const interval = durationMs(replication.interval ?? '60s');
    const maxRpo = durationMs(replication.maxRpo ?? '5m');
    if (interval < MIN_INTERVAL_MS) {
      error(
        'replication-policy',
        `a replication interval of ${replication.interval} is shorter than a second: each sync would start before the last one ends`,
        [...path, 'interval'],
      );
    }
    if (maxRpo < interval) {
      error(
        'replication-policy',
        `maxRpo ${replication.maxRpo ?? '5m'} is shorter than the interval ${replication.interval ?? '60s'}: every replica would be past its RPO before the next sync`,
        [...path, replication.maxRpo === undefined ? 'interval' : 'maxRpo'],
      );
    }
  };
  const fleet = broken.has('failover') ? undefined : doc.spec.failover?.replication;
  if (fleet) policy(fleet, ['spec', 'failover', 'replication']);
  const kinds = new Map(doc.spec.images.map((i) => [i.name, i.kind]));
  (doc.spec.instances ?? []).forEach((g, i) => {
    if (broken.has(`instances/${i}`) || typeof g.failover !== 'object') return;
    const own = g.failover.replication;
    if (own === undefined || own === false) return;
    policy(own, ['spec', 'instances', i, 'failover', 'replication']);
    if (kinds.get(g.image) === 'container') {
      warn(
        'replication-policy',
        `group ${g.name} runs sandboxes, whose disks are not replicated: they restart from their image (docs/replication.md)`,
        ['spec', 'instances', i, 'failover', 'replication'],
        'key',
      );
    }
  });
}
