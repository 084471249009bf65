// Audit: the license, patch and failover reports, from the observed state (refreshed from the
// hosts) or — planned — from the spec and its placement alone, with no Redis.
import { type AuditInput, observedInput, plannedInput } from '../audit/audit-input.js';
import { type AuditKind, type AuditReport, buildReport } from '../audit/report.js';
import type { ObservedState } from '../model/observed.js';
import type { SourceRevision } from '../model/source.js';
import { schedule } from '../scheduler/schedule.js';
import { ReplicationState } from '../state/replication-state.js';
import { type HostJudgement, instancesUnknown, judgeHosts } from './host-health.js';
import { refresh } from './refresh.js';
import { replicates } from './replication.js';
import type { FleetSession, ValidSpec } from './session.js';
import { sessionSource } from './source.js';

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

/** What an observed audit reads, and what it was made from (the HTTP server's metrics use both). */
export interface ObservedAuditInput {
  readonly input: AuditInput;
  /** The state refreshed from the hosts (not written back). */
  readonly observed: ObservedState;
  /** Every spec host's health as the audit judged it. */
  readonly health: ReadonlyMap<string, HostJudgement>;
}

/** The state refreshed from the hosts, each host judged, as the audits take it. */
export async function observeForAudit(
  session: FleetSession,
  nowMs: number = Date.now(),
): Promise<ObservedAuditInput> {
  const observed = await refresh(session, { persist: false });
  const silent = new Set(observed.unanswered ?? []);
  const health = await judgeHosts(
    session,
    nowMs,
    new Map(session.fleet.hosts.map((h) => [h.name, !silent.has(h.name)])),
  );
  const hostsNotOk = new Map(
    [...health].filter(([, j]) => instancesUnknown(j.health)).map(([h, j]) => [h, j.health]),
  );
  const replication = replicates(session)
    ? {
        statuses: await new ReplicationState(session.connection.redis, session.fleet.name).all(),
        nowMs,
      }
    : undefined;
  const patchStatuses = await session.state.patchStatuses();
  return {
    input: {
      ...observedInput(session.fleet, observed),
      hostsNotOk,
      ...(patchStatuses.size > 0 ? { patchStatuses } : {}),
      ...(replication ? { replication } : {}),
    },
    observed,
    health,
  };
}

/** The fleet as its state and hosts have it now. */
export async function auditObserved(
  session: FleetSession,
  kinds: readonly AuditKind[],
  generatedAt: string,
): Promise<AuditReport> {
  const revision = sessionSource(session);
  const { input } = await observeForAudit(session);
  return buildReport(kinds, input, {
    generatedAt,
    specHash: session.specHash,
    revision: await revision,
  });
}
