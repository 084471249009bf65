import { Command } from 'commander';
import { VfleetError } from '../../model/errors.js';
import type { ActionJobData } from '../../queue/plan-jobs.js';
import { takeoverMsFrom, workerLockOptions } from '../../queue/worker-lock.js';
import { openFleet, queuePrefixOf } from '../fleet-session.js';
import type { Terminal } from '../terminal.js';

const SHUTDOWN_TIMEOUT_MS = 30_000;

/**
 * A standalone worker: serves the host queues of the fleet until SIGTERM or SIGINT, then stops
 * taking jobs and waits (at most 30 s) for the ones it runs. Any number of them, on any number of
 * machines, may serve one fleet: workers hold nothing that Redis and the hosts do not.
 */
export async function runWorker(
  args: {
    file: string;
    concurrency: number;
    hosts: readonly string[] | undefined;
    /** A job held by a worker that dies is taken over within this (VFLEET_WORKER_LOCK_MS). */
    takeoverMs: number;
  },
  terminal: Terminal,
): Promise<number> {
  // A daemon waits for its Redis to come back rather than give up on it.
  const session = await openFleet(args.file, terminal, { lostAfterMs: Number.POSITIVE_INFINITY });
  if (!session) return 1;
  const names = args.hosts ?? session.fleet.hosts.map((h) => h.name);
  for (const name of names) {
    if (!session.fleet.hosts.some((h) => h.name === name)) {
      await session.close();
      throw new VfleetError('unknown-host', `no host ${name} in ${args.file}`);
    }
  }
  // BullMQ loads only for commands that run jobs.
  const [{ Worker }, { actionHandler }, { withErrorListener }] = await Promise.all([
    import('bullmq'),
    import('../../queue/action-handler.js'),
    import('../../queue/error-listener.js'),
  ]);
  const handler = actionHandler(session.engines(), session.state, () => Date.now());
  const workers = names.map((host) => {
    const worker = new Worker<ActionJobData>(`host.${host}`, (job) => handler(job), {
      connection: session.connect(),
      prefix: queuePrefixOf(session.fleet),
      concurrency: args.concurrency,
      // A job a dead worker held is taken over within args.takeoverMs (worker-lock.ts says why).
      ...workerLockOptions(args.takeoverMs),
    });
    return withErrorListener(worker);
  });
  await Promise.all(workers.map((w) => w.waitUntilReady()));
  // Heartbeats: a host that answers is alive; one that does not (`vfleet host fail`) stops
  // beating, which is what the controller watches for.
  const engines = session.engines();
  const beat = async () => {
    for (const host of names) {
      try {
        await engines.engine(host).facts();
        await session.state.heartbeat(host, Date.now());
      } catch {
        // no answer: no heartbeat
      }
    }
  };
  await beat();
  const heartbeats = setInterval(
    () => void beat(),
    Number(process.env.VFLEET_HEARTBEAT_MS ?? 5_000),
  );
  terminal.out(
    `vfleet worker: serving ${names.length} host queue${names.length === 1 ? '' : 's'} of fleet ${session.fleet.name} (pid ${process.pid})`,
  );
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  clearInterval(heartbeats);
  terminal.out('vfleet worker: stopping; finishing the jobs in hand');
  const closed = Promise.all(workers.map((w) => w.close()));
  const timedOut = await Promise.race([
    closed.then(() => false),
    new Promise<boolean>((resolve) => setTimeout(() => resolve(true), SHUTDOWN_TIMEOUT_MS).unref()),
  ]);
  if (timedOut) {
    await Promise.all(workers.map((w) => w.close(true)));
    terminal.err(
      'vfleet worker: jobs still running after 30 s were left for another worker to retry',
    );
  }
  await session.close();
  return 0;
}

export function workerCommand(terminal: Terminal, setExit: (code: number) => void): Command {
  return new Command('worker')
    .description("serve the fleet's host queues (a daemon; stops gracefully on SIGTERM)")
    .option('-f, --file <path>', 'the fleet spec', 'fleet.yaml')
    .option('--concurrency <n>', 'jobs each host runs at once', (v) => Number.parseInt(v, 10), 4)
    .option('--hosts <names>', 'serve only these hosts (comma-separated)')
    .option(
      '--lock-ms <ms>',
      'a job held by a worker that dies is taken over within this (default VFLEET_WORKER_LOCK_MS, else 30000)',
    )
    .action(async (o: { file: string; concurrency: number; hosts?: string; lockMs?: string }) => {
      if (!Number.isInteger(o.concurrency) || o.concurrency < 1) {
        throw new VfleetError('usage', '--concurrency takes a whole number ≥ 1');
      }
      setExit(
        await runWorker(
          {
            file: o.file,
            concurrency: o.concurrency,
            hosts: o.hosts?.split(',').map((h) => h.trim()),
            takeoverMs: takeoverMsFrom(process.env, o.lockMs),
          },
          terminal,
        ),
      );
    });
}
