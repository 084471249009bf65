// What `vfleet controller` and `vfleet worker` share about their HTTP server (src/http/): the
// options, their check before anything starts (the address, and credentials whenever it is
// reachable beyond loopback — a one-line refusal otherwise), starting it with the CLI's HTML
// audit page, and the fleet's sync status as the leader published it (app/sync.ts).
import type { Command } from 'commander';
import type { FleetSession } from '../app/session.js';
import { readSync } from '../app/sync.js';
import { credentialsFor } from '../http/basic-auth.js';
import type { GitWebhook } from '../http/git-webhook.js';
import { parseListenAddress } from '../http/listen-address.js';
import type { FleetSync } from '../http/metrics.js';
import {
  type HttpServerOptions,
  type RunningHttpServer,
  type ServedProcess,
  startHttpServer,
} from '../http/server.js';
import { VfleetError } from '../model/errors.js';
import { renderAuditHtml } from './views/audit/html.js';

export interface HttpArgs {
  readonly http?: string;
  readonly httpQueuesWrite: boolean;
}

export function withHttpOptions(command: Command): Command {
  return command
    .option(
      '--http <host:port>',
      'serve /metrics, /healthz, /readyz, /queues and /reports/ here (port 0: any free port, printed); beyond loopback it needs VFLEET_HTTP_USER and VFLEET_HTTP_PASSWORD (or VFLEET_HTTP_PASSWORD_FILE)',
    )
    .option(
      '--http-queues-write',
      'let the queue board at /queues retry, promote, clean and remove jobs (default: read-only)',
      false,
    );
}

export type HttpSettings = Omit<
  HttpServerOptions,
  'process' | 'renderReport' | 'log' | 'gitWebhook'
>;

/** The server's settings, checked (throws a usage or credentials error); undefined without --http. */
export function httpSettings(args: HttpArgs, env: NodeJS.ProcessEnv): HttpSettings | undefined {
  if (args.http === undefined) {
    if (args.httpQueuesWrite) throw new VfleetError('usage', '--http-queues-write needs --http');
    return undefined;
  }
  const listen = parseListenAddress(args.http);
  // How long the metrics' observation (a refresh and the audits) is kept: 15 s by default.
  const cacheMs = env.VFLEET_HTTP_CACHE_MS;
  if (cacheMs !== undefined && cacheMs !== '' && !/^\d{1,9}$/.test(cacheMs))
    throw new VfleetError('usage', 'VFLEET_HTTP_CACHE_MS takes a whole number of milliseconds');
  return {
    listen,
    credentials: credentialsFor(listen, env),
    queuesWritable: args.httpQueuesWrite,
    ...(cacheMs === undefined || cacheMs === '' ? {} : { observationMaxAgeMs: Number(cacheMs) }),
  };
}

export function startHttp(
  settings: HttpSettings,
  served: ServedProcess,
  log: (line: string) => void,
  gitWebhook?: GitWebhook,
): Promise<RunningHttpServer> {
  return startHttpServer({
    ...settings,
    process: served,
    renderReport: renderAuditHtml,
    log,
    ...(gitWebhook ? { gitWebhook } : {}),
  });
}

/**
 * `vfleet_fleet_info`'s values: the sync status and health the leader controller published
 * (docs/reconcile.md), and the commit the fleet was last synced to — the target's while none
 * is, the spec's sha256 when the spec is a file outside git. As `vfleet status` takes them: only
 * while a controller leads (a published judgement outlives its controller); undefined otherwise.
 */
export async function publishedFleetSync(session: FleetSession): Promise<FleetSync | undefined> {
  const [{ published }, leader] = await Promise.all([readSync(session), session.control.leader()]);
  if (!published || !leader) return undefined;
  return {
    syncStatus: published.status,
    health: published.health,
    revision: (published.synced ?? published.target)?.commit ?? session.specHash,
  };
}
