// Audit: the license, patch and failover reports, from the observed state (refreshed from the
// hosts) or — planned — from the spec and its placement alone, with no Redis.

import { observedInput, plannedInput } from '../audit/audit-input.js';
import { type AuditKind, type AuditReport, buildReport } from '../audit/report.js';
import type { SourceRevision } from '../model/source.js';
import { schedule } from '../scheduler/schedule.js';
import { instancesUnknown, judgeHosts } from './host-health.js';
import { refresh } from './refresh.js';
import type { FleetSession, ValidSpec } from './session.js';
import { describeFileSource } from './source.js';

/** The spec as vfleet would place it: no Redis, no hosts. */
export function auditPlanned(
  spec: ValidSpec,
  kinds: readonly AuditKind[],
  generatedAt: string,
  revision?: SourceRevision,
): AuditReport {
  const input = plannedInput(spec.fleet, schedule(spec.fleet));
  return buildReport(kinds, input, {
    generatedAt,
    specHash: spec.specHash,
    ...(revision ? { revision } : {}),
  });
}

/** The fleet as its state and hosts have it now. */
export async function auditObserved(
  session: FleetSession,
  kinds: readonly AuditKind[],
  generatedAt: string,
): Promise<AuditReport> {
  const revision = session.revision
    ? Promise.resolve(session.revision)
    : describeFileSource(session.file);
  const observed = await refresh(session, { persist: false });
  const silent = new Set(observed.unanswered ?? []);
  const health = await judgeHosts(
    session,
    Date.now(),
    new Map(session.fleet.hosts.map((h) => [h.name, !silent.has(h.name)])),
  );
  const hostsNotOk = new Map(
    [...health].filter(([, j]) => instancesUnknown(j.health)).map(([h, j]) => [h, j.health]),
  );
  const input = { ...observedInput(session.fleet, observed), hostsNotOk };
  return buildReport(kinds, input, {
    generatedAt,
    specHash: session.specHash,
    revision: await revision,
  });
}
