// One sync of a protected VM's disk to its failover host (docs/replication.md): the job a BullMQ
// Job Scheduler adds every `failover.replication.interval` for each such VM (replication-queue.ts).
// It reads where the fleet has the instance now — the job carries only its name, so a VM that
// moved, restarted elsewhere or got a new failover host is synced as it is — takes the
// instance's sync lock (a sync still running makes the next one a skip), asks the source host
// for the next increment, and records the outcome. A new failover host gets a full copy first;
// the old one's replica is dropped only after the new one is complete.
import type { HostEngine } from '../engines/host-engine.js';
import { isVfleetError } from '../model/errors.js';
import type { Fleet } from '../model/fleet.js';
import type { RecordedInstance } from '../model/instances.js';
import type { ReplicationStatus } from '../model/replication.js';

export interface ReplicationJobDeps {
  readonly fleet: Fleet;
  engine(host: string): HostEngine;
  instance(name: string): Promise<RecordedInstance | undefined>;
  readonly replication: {
    get(name: string): Promise<ReplicationStatus | undefined>;
    put(status: ReplicationStatus): Promise<void>;
    forget(names: readonly string[]): Promise<void>;
    lock(name: string, token: string, ms: number): Promise<boolean>;
    release(name: string, token: string): Promise<void>;
  };
  appendEvent(event: Record<string, string | number | null>): Promise<unknown>;
  readonly clock: () => number;
}

export type ReplicationOutcome =
  | { readonly outcome: 'synced'; readonly status: ReplicationStatus }
  | { readonly outcome: 'skipped'; readonly why: string }
  | { readonly outcome: 'failed'; readonly status: ReplicationStatus };

/** How long a sync may hold its instance's lock (a worker that dies frees it by then). */
const LOCK_MS = 10 * 60_000;

export async function replicateInstance(
  deps: ReplicationJobDeps,
  name: string,
  token: string,
): Promise<ReplicationOutcome> {
  const record = await deps.instance(name);
  const group = deps.fleet.groups.find((g) => g.name === record?.group);
  if (!record || !group?.replication) return { outcome: 'skipped', why: 'not a replicated VM' };
  const target = record.failoverHost;
  if (target === null) return { outcome: 'skipped', why: 'no failover host to replicate to' };
  if (!(await deps.replication.lock(name, token, LOCK_MS))) {
    return { outcome: 'skipped', why: 'the previous sync is still running' };
  }
  try {
    const previous = await deps.replication.get(name);
    const moved = previous !== undefined && previous.target !== target;
    const started = deps.clock();
    try {
      const result = await deps
        .engine(record.host)
        .replicate(name, record.generation, deps.engine(target), {
          ...(moved
            ? { full: `the failover host moved from ${previous.target} to ${target}` }
            : {}),
          ...(previous?.source !== undefined && previous.source !== record.host
            ? { full: `${name} now runs on ${record.host}, not ${previous.source}` }
            : {}),
        });
      const { point } = result;
      const status: ReplicationStatus = {
        instance: name,
        source: record.host,
        target,
        generation: record.generation,
        consistentAt: point.consistentAt,
        seq: point.seq,
        lastSyncAt: deps.clock(),
        lastBytes: point.lastBytes,
        lastKind: point.lastKind,
        lastDurationMs: result.durationMs,
        ...(result.fullReason ? { fullReason: result.fullReason } : {}),
        totalBytes: (point.lastKind === 'full' ? 0 : (previous?.totalBytes ?? 0)) + point.lastBytes,
        failures: 0,
      };
      await deps.replication.put(status);
      if (moved) await dropOld(deps, previous, name);
      if (point.lastKind === 'full' || previous?.error !== undefined) {
        await deps.appendEvent({
          at: status.lastSyncAt,
          type: point.lastKind === 'full' ? 'replica-full-sync' : 'replication-recovered',
          instance: name,
          host: record.host,
          target,
          bytes: point.lastBytes,
          reason: result.fullReason ?? null,
        });
      }
      return { outcome: 'synced', status };
    } catch (e) {
      const message = isVfleetError(e) ? `${e.code}: ${e.message}` : String(e);
      const status: ReplicationStatus = {
        instance: name,
        source: record.host,
        target,
        generation: record.generation,
        consistentAt: moved ? null : (previous?.consistentAt ?? null),
        seq: moved ? 0 : (previous?.seq ?? 0),
        lastSyncAt: deps.clock(),
        lastBytes: 0,
        lastKind: previous?.lastKind ?? null,
        lastDurationMs: deps.clock() - started,
        totalBytes: moved ? 0 : (previous?.totalBytes ?? 0),
        error: message,
        failures: (previous?.failures ?? 0) + 1,
      };
      // A failing target keeps the old replica until the new one is complete: record the new
      // target's failure without losing what the old one still holds.
      if (!moved) await deps.replication.put(status);
      else await deps.replication.put({ ...previous, error: message, failures: status.failures });
      if ((previous?.failures ?? 0) === 0) {
        await deps.appendEvent({
          at: status.lastSyncAt,
          type: 'replication-failed',
          instance: name,
          host: record.host,
          target,
          error: message,
        });
      }
      return { outcome: 'failed', status };
    }
  } finally {
    await deps.replication.release(name, token).catch(() => undefined);
  }
}

async function dropOld(
  deps: ReplicationJobDeps,
  previous: ReplicationStatus,
  name: string,
): Promise<void> {
  try {
    await deps.engine(previous.target).dropReplica(name);
  } catch (e) {
    // A host that is down keeps its stale replica; the event says so, nothing else depends on it.
    await deps.appendEvent({
      at: deps.clock(),
      type: 'replica-drop-failed',
      instance: name,
      host: previous.target,
      error: isVfleetError(e) ? e.message : String(e),
    });
  }
}
