// Audit: the license, patch and failover reports, from the observed state (refreshed from the
// hosts) or — planned — from the spec and its placement alone, with no Redis.
import { observedInput, plannedInput } from '../audit/audit-input.js';
import { type AuditKind, type AuditReport, buildReport } from '../audit/report.js';
import { schedule } from '../scheduler/schedule.js';
import { refresh } from './refresh.js';
import type { FleetSession, ValidSpec } from './session.js';

/** The spec as vfleet would place it: no Redis, no hosts. */
export function auditPlanned(
  spec: ValidSpec,
  kinds: readonly AuditKind[],
  generatedAt: string,
): AuditReport {
  const input = plannedInput(spec.fleet, schedule(spec.fleet));
  return buildReport(kinds, input, { generatedAt, specHash: spec.specHash });
}

/** The fleet as its state and hosts have it now. */
export async function auditObserved(
  session: FleetSession,
  kinds: readonly AuditKind[],
  generatedAt: string,
): Promise<AuditReport> {
  const input = observedInput(session.fleet, await refresh(session, { persist: false }));
  return buildReport(kinds, input, { generatedAt, specHash: session.specHash });
}
