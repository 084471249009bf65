// One observation of a fleet for its metrics and report pages (src/http/): the state refreshed
// from the hosts, every host judged, the three audits, and the instances counted by status as
// `vfleet status` shows them. It costs a refresh (every host listed), so the HTTP server caches
// it for a few seconds instead of making one per scrape.
import type { AuditInput } from '../audit/audit-input.js';
import { AUDIT_KINDS, type AuditReport, buildReport } from '../audit/report.js';
import type { InstanceStatus } from '../model/observed.js';
import { type ObservedAuditInput, observeForAudit } from './audit.js';
import { instancesUnknown } from './host-health.js';
import type { FleetSession } from './session.js';

/** An instance's status as `vfleet status` has it (app/status.ts). */
export type ObservedStatus = InstanceStatus | 'missing' | 'unknown';
export const OBSERVED_STATUSES: readonly ObservedStatus[] = [
  'created',
  'running',
  'stopped',
  'failed',
  'missing',
  'unknown',
];

export interface FleetObservation {
  /** Epoch ms when it was made. */
  readonly at: number;
  readonly fleet: string;
  readonly specHash: string;
  /** What the audits read: a report of one audit is built from it on request. */
  readonly input: AuditInput;
  /** Every audit (licenses, patches, failover). */
  readonly report: AuditReport;
  readonly instancesByStatus: Readonly<Record<ObservedStatus, number>>;
}

export async function observeFleet(
  session: FleetSession,
  nowMs: number = Date.now(),
): Promise<FleetObservation> {
  const seen = await observeForAudit(session, nowMs);
  const report = buildReport(AUDIT_KINDS, seen.input, {
    generatedAt: new Date(nowMs).toISOString(),
    specHash: session.specHash,
  });
  return {
    at: nowMs,
    fleet: session.fleet.name,
    specHash: session.specHash,
    input: seen.input,
    report,
    instancesByStatus: countByStatus(seen),
  };
}

/**
 * As status counts them: `unknown` on a host that is not ok (never `running` then), `missing`
 * when the host answered without it, else the status refresh found.
 */
function countByStatus({ observed, health }: ObservedAuditInput): Record<ObservedStatus, number> {
  const counts = Object.fromEntries(OBSERVED_STATUSES.map((s) => [s, 0])) as Record<
    ObservedStatus,
    number
  >;
  const notOk = (host: string) => {
    const h = health.get(host)?.health;
    return h !== undefined && instancesUnknown(h);
  };
  for (const i of observed.instances) counts[notOk(i.host) ? 'unknown' : i.status]++;
  for (const host of Object.values(observed.missing ?? {}))
    counts[notOk(host) ? 'unknown' : 'missing']++;
  return counts;
}
