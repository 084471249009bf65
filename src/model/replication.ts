// A protected VM's disk replication as vfleet records it (`vfleet:{F}:replication`, written by
// each sync job: queue/replication-job.ts) and as status and the failover audit judge it
// (docs/replication.md). The replica itself is the failover host's (HostEngine.replicas).
import type { ReplicationPolicy } from './fleet.js';

export interface ReplicationStatus {
  readonly instance: string;
  /** The host whose disk is replicated, and the failover host that keeps the replica. */
  readonly source: string;
  readonly target: string;
  readonly generation: number;
  /** The replica's consistency point: the source's disk as it was then. Null before the first sync. */
  readonly consistentAt: number | null;
  readonly seq: number;
  /** When the last sync ended, whether it succeeded or not. */
  readonly lastSyncAt: number;
  readonly lastBytes: number;
  readonly lastKind: 'full' | 'incremental' | null;
  /** The last sync's whole time: take, ship and commit on the replica's host. */
  readonly lastDurationMs: number;
  /** Why the last full copy was one. */
  readonly fullReason?: string;
  /** Bytes shipped since the replica's first full copy. */
  readonly totalBytes: number;
  /** The last sync's error, while syncs fail; absent once one succeeds. */
  readonly error?: string;
  /** Syncs failed in a row. */
  readonly failures: number;
}

/** ok; syncing for the first time; failing (the last sync failed); rpo-exceeded (too old). */
export type ReplicationHealth = 'ok' | 'pending' | 'failing' | 'rpo-exceeded';

/** How old the replica is now (its recovery point), in seconds; null before its first sync. */
export function rpoSeconds(status: ReplicationStatus, nowMs: number): number | null {
  return status.consistentAt === null
    ? null
    : Math.max(0, Math.round((nowMs - status.consistentAt) / 1000));
}

export function replicationHealth(
  status: ReplicationStatus | undefined,
  policy: ReplicationPolicy,
  nowMs: number,
): ReplicationHealth {
  if (status === undefined || status.consistentAt === null) return 'pending';
  if (nowMs - status.consistentAt > policy.maxRpoMs) return 'rpo-exceeded';
  return status.error === undefined ? 'ok' : 'failing';
}
