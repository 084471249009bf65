// Serving a fleet's host queues (what `vfleet worker` is): one worker per host queue, wired by
// queue/host-worker.ts as apply's in-process workers are, and a heartbeat per host that answers.
// Returns a handle; stopping it finishes the jobs in hand within a bound.

import { VfleetError } from '../model/errors.js';
import { replicates, replicationDeps } from './replication.js';
import type { FleetSession } from './session.js';

export interface ServeOptions {
  /** The hosts to serve (default: all of the fleet's). */
  readonly hosts?: readonly string[];
  readonly concurrency: number;
  /** A job held by a worker that dies is taken over within this (VFLEET_WORKER_LOCK_MS). */
  readonly takeoverMs: number;
  /** How often each served host that answers gets a heartbeat. */
  readonly heartbeatMs: number;
}

export interface Serving {
  readonly hosts: readonly string[];
  /**
   * Stops taking jobs and waits for the ones in hand, at most `graceMs`; true when some were
   * still running then (they are left for another worker to retry).
   */
  stop(graceMs: number): Promise<boolean>;
}

export async function serveFleet(session: FleetSession, options: ServeOptions): Promise<Serving> {
  const hosts = options.hosts ?? session.fleet.hosts.map((h) => h.name);
  for (const name of hosts) {
    if (!session.fleet.hosts.some((h) => h.name === name)) {
      throw new VfleetError('unknown-host', `no host ${name} in ${session.file}`);
    }
  }
  // BullMQ loads only for operations that run jobs.
  const [{ actionHandler }, { hostWorker }] = await Promise.all([
    import('../queue/action-handler.js'),
    import('../queue/host-worker.js'),
  ]);
  const handler = actionHandler(session.engines, session.state, () => Date.now());
  const workers = hosts.map((host) =>
    hostWorker(host, {
      connection: session.connect(),
      prefix: session.queuePrefix,
      concurrency: options.concurrency,
      takeoverMs: options.takeoverMs,
      handler,
    }),
  );
  // The fleet's disk replication syncs (docs/replication.md), when its spec has any.
  const syncs = replicates(session)
    ? [
        (await import('../queue/replication-queue.js')).replicationWorker(
          () => replicationDeps(session, () => Date.now()),
          {
            connection: session.connect(),
            prefix: session.queuePrefix,
            concurrency: options.concurrency,
          },
        ),
      ]
    : [];
  const all = [...workers, ...syncs];
  await Promise.all(all.map((w) => w.waitUntilReady()));
  // Heartbeats: a host that answers is alive; one that does not (`vfleet host fail|partition`)
  // stops beating, which is what the controller watches for.
  const beat = async () => {
    for (const host of hosts) {
      try {
        await session.engines.engine(host).facts();
        await session.state.heartbeat(host, Date.now());
      } catch {
        // no answer: no heartbeat
      }
    }
  };
  await beat();
  const heartbeats = setInterval(() => void beat(), options.heartbeatMs);
  return {
    hosts,
    async stop(graceMs) {
      clearInterval(heartbeats);
      const closed = Promise.all(all.map((w) => w.close()));
      let timer: NodeJS.Timeout | undefined;
      const timedOut = await Promise.race([
        closed.then(() => false),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(true), graceMs);
        }),
      ]);
      clearTimeout(timer);
      if (timedOut) await Promise.all(all.map((w) => w.close(true)));
      return timedOut;
    },
  };
}
