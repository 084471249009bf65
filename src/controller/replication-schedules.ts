// The controller's part in disk replication (docs/replication.md): the leader keeps one BullMQ
// Job Scheduler per replicated VM in the fleet's `replication` queue, in step with the state —
// after every reconcile, and again only when the state's version or the spec changed — and every
// controller that runs its own workers runs the replication worker. A fleet without
// `failover.replication` gets neither (no queue is touched).
import { Queue, type Worker } from 'bullmq';
import { replicates, replicationDeps } from '../app/replication.js';
import type { FleetSession } from '../app/session.js';
import { withErrorListener } from '../queue/error-listener.js';
import {
  REPLICATION_QUEUE,
  replicationWorker,
  syncReplicationSchedules,
} from '../queue/replication-queue.js';
import { ReplicationState } from '../state/replication-state.js';

export class ReplicationSchedules {
  private queue: Queue | undefined;
  private worker: Worker | undefined;
  private synced = '';

  constructor(
    private readonly session: () => FleetSession,
    private readonly options: {
      readonly runWorker: boolean;
      readonly concurrency: number;
      readonly clock: () => number;
      readonly emit: (type: string, fields: Record<string, unknown>) => Promise<void>;
    },
  ) {}

  /** Starts the worker when the spec replicates and this controller runs workers. */
  startWorker(): void {
    const session = this.session();
    if (this.worker || !this.options.runWorker || !replicates(session)) return;
    this.worker = replicationWorker(() => replicationDeps(this.session(), this.options.clock), {
      connection: session.connect(),
      prefix: session.queuePrefix,
      concurrency: this.options.concurrency,
    });
  }

  /** The leader's step: the schedulers made to match the state, when it or the spec changed. */
  async sync(): Promise<void> {
    const session = this.session();
    const version = await session.state.version();
    const key = `${session.specHash}:${version}`;
    if (key === this.synced) return;
    if (!replicates(session) && this.queue === undefined && this.synced === '') {
      this.synced = key;
      return;
    }
    const policies = new Map(session.fleet.groups.map((g) => [g.name, g.replication]));
    const wanted = new Map<string, number>();
    for (const r of (await session.state.readAll()).instances) {
      const policy = policies.get(r.group);
      if (policy && r.failoverHost !== null) wanted.set(r.instance, policy.intervalMs);
    }
    this.queue ??= withErrorListener(
      new Queue(REPLICATION_QUEUE, { connection: session.connect(), prefix: session.queuePrefix }),
    );
    const changed = await syncReplicationSchedules(this.queue, wanted);
    if (changed.added + changed.removed > 0) {
      await this.options.emit('replication-scheduled', {
        instances: wanted.size,
        added: changed.added,
        removed: changed.removed,
      });
    }
    // Records of instances no longer replicated go too (their replicas stay until dropped).
    const replication = new ReplicationState(session.connection.redis, session.fleet.name);
    await replication.forget([...(await replication.all()).keys()].filter((n) => !wanted.has(n)));
    this.synced = key;
  }

  /**
   * Lets go of the queue and worker (made from a session about to close): the next `startWorker`
   * and `sync` make new ones from the current session. The promise is theirs closing, a sync
   * running let finish first (which may take longer than a tick may wait).
   */
  detach(): Promise<void> {
    const { worker, queue } = this;
    this.worker = undefined;
    this.queue = undefined;
    return (async () => {
      await worker?.close().catch(() => undefined);
      await queue?.close().catch(() => undefined);
    })();
  }

  async close(): Promise<void> {
    await this.worker?.close().catch(() => undefined);
    await this.queue?.close().catch(() => undefined);
    this.worker = undefined;
    this.queue = undefined;
  }
}
