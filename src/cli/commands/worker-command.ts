// `vfleet worker`: serve the fleet's host queues until SIGTERM or SIGINT (app/worker.ts); with
// --http, its metrics, probes, queue board and reports too (src/http/).
import { Command } from 'commander';
import { type Serving, serveFleet } from '../../app/worker.js';
import { VfleetError } from '../../model/errors.js';
import { takeoverMsFrom } from '../../queue/worker-lock.js';
import {
  type HttpArgs,
  httpSettings,
  publishedFleetSync,
  startHttp,
  withHttpOptions,
} from '../http-options.js';
import { withSession } from '../open-session.js';
import type { Terminal } from '../terminal.js';
import { httpListeningLine } from '../views/http-view.js';

const SHUTDOWN_TIMEOUT_MS = 30_000;

/**
 * A standalone worker: serves the host queues of the fleet until SIGTERM or SIGINT, then stops
 * taking jobs and waits (at most 30 s) for the ones it runs. Any number of them, on any number of
 * machines, may serve one fleet: workers hold nothing that Redis and the hosts do not.
 */
export function runWorker(
  args: {
    file: string;
    concurrency: number;
    hosts: readonly string[] | undefined;
    /** A job held by a worker that dies is taken over within this (VFLEET_WORKER_LOCK_MS). */
    takeoverMs: number;
  } & HttpArgs,
  terminal: Terminal,
): Promise<number> {
  const http = httpSettings(args, process.env);
  return withSession(
    args.file,
    terminal,
    async (session) => {
      // Listening before serving: a port in use stops the worker before it takes a job. Ready
      // once it serves and while Redis answers; the fleet's sync is the leader's.
      let serving: Serving | undefined;
      const server = http
        ? await startHttp(
            http,
            {
              session: () => session,
              sync: publishedFleetSync,
              notReady: () => (serving ? undefined : 'starting: not serving the queues yet'),
            },
            (l) => terminal.err(l),
          )
        : undefined;
      if (server && http)
        terminal.out(httpListeningLine('vfleet worker', server.url, http.queuesWritable));
      try {
        serving = await serveFleet(session, {
          ...(args.hosts ? { hosts: args.hosts } : {}),
          concurrency: args.concurrency,
          takeoverMs: args.takeoverMs,
          heartbeatMs: Number(process.env.VFLEET_HEARTBEAT_MS ?? 5_000),
        });
      } catch (e) {
        await server?.close();
        throw e;
      }
      server?.warm();
      const n = serving.hosts.length;
      terminal.out(
        `vfleet worker: serving ${n} host queue${n === 1 ? '' : 's'} of fleet ${session.fleet.name} (pid ${process.pid})`,
      );
      await new Promise<void>((resolve) => {
        process.once('SIGTERM', resolve);
        process.once('SIGINT', resolve);
      });
      terminal.out('vfleet worker: stopping; finishing the jobs in hand');
      await server?.close();
      if (await serving.stop(SHUTDOWN_TIMEOUT_MS)) {
        terminal.err(
          'vfleet worker: jobs still running after 30 s were left for another worker to retry',
        );
      }
      return 0;
    },
    // A daemon waits for its Redis to come back rather than give up on it.
    { lostAfterMs: Number.POSITIVE_INFINITY },
  );
}

export function workerCommand(terminal: Terminal, setExit: (code: number) => void): Command {
  return withHttpOptions(new Command('worker'))
    .description("serve the fleet's host queues (a daemon; stops gracefully on SIGTERM)")
    .option('-f, --file <path>', 'the fleet spec', 'fleet.yaml')
    .option('--concurrency <n>', 'jobs each host runs at once', (v) => Number.parseInt(v, 10), 4)
    .option('--hosts <names>', 'serve only these hosts (comma-separated)')
    .option(
      '--lock-ms <ms>',
      'a job held by a worker that dies is taken over within this (default VFLEET_WORKER_LOCK_MS, else 30000)',
    )
    .action(
      async (
        o: { file: string; concurrency: number; hosts?: string; lockMs?: string } & HttpArgs,
      ) => {
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
              ...(o.http === undefined ? {} : { http: o.http }),
              httpQueuesWrite: o.httpQueuesWrite,
            },
            terminal,
          ),
        );
      },
    );
}
