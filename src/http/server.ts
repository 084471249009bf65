// The HTTP server of `vfleet controller` and `vfleet worker` (--http HOST:PORT): `/metrics`
// (metrics.ts), `/healthz`, `/readyz`, `/queues` (Bull Board, queue-board.ts) and `/reports/`
// (reports.ts). Plain node:http, bounded everywhere: header size, time to send the headers and
// the whole request, connections, requests handled at once, how long an answer may take, and
// request bodies (none is read but a board change's and a push webhook's, within a limit). Every
// error is a status and one line of text — a stack never reaches a client. Basic auth guards
// everything but the two probes and the push webhook (`/hooks/git`, served only when the
// controller has its secret: the forge signs the body instead) whenever credentials are given
// (basic-auth.ts), which they must be beyond loopback.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { observeFleet } from '../app/fleet-observation.js';
import type { FleetSession } from '../app/session.js';
import { VfleetError } from '../model/errors.js';
import { redactedMessage } from '../state/redact.js';
import { within } from '../state/within.js';
import { authorized, type Credentials } from './basic-auth.js';
import { answerWebhook, type GitWebhook, WEBHOOK_PATH } from './git-webhook.js';
import { HostQueues } from './host-queues.js';
import { HttpError } from './http-error.js';
import { formatAddress, type ListenAddress } from './listen-address.js';
import { FleetMetrics, type MetricsSource } from './metrics.js';
import { ObservationCache } from './observation-cache.js';
import { BOARD_PATH, queueBoard } from './queue-board.js';
import { REPORTS_PATH, type ReportRenderer, reportPage } from './reports.js';

/** What the process serving HTTP gives the server. */
export interface ServedProcess extends MetricsSource {
  /** Why it is not ready besides Redis (the controller: it stopped ticking); undefined: ready. */
  notReady(): string | undefined;
}

export interface HttpServerOptions {
  readonly listen: ListenAddress;
  /** null: no auth (loopback only: credentialsFor refuses anything else without them). */
  readonly credentials: Credentials | null;
  /** --http-queues-write: the board may change jobs. */
  readonly queuesWritable: boolean;
  readonly process: ServedProcess;
  /** The audit report as an HTML page (the CLI's view). */
  readonly renderReport: ReportRenderer;
  /** How long the observation behind the metrics is kept (default 15 s). */
  readonly observationMaxAgeMs?: number;
  /** `POST /hooks/git`, a forge's push webhook (git-webhook.ts); absent: not served (404). */
  readonly gitWebhook?: GitWebhook;
  /** One line per failed request, for the process's log (already redacted). */
  readonly log?: (line: string) => void;
}

export interface RunningHttpServer {
  /** `http://host:port`, the port the one bound. */
  readonly url: string;
  readonly metrics: FleetMetrics;
  /** Opens the host queues and starts the first observation, so the first scrape is quick. */
  warm(): void;
  /** Stops listening, lets the requests in hand finish (at most a few seconds), closes. */
  close(): Promise<void>;
}

/** Bounds; none is a setting, each is far above what a scrape or a browser needs. */
const LIMITS = {
  headerBytes: 16 * 1024,
  headersMs: 10_000,
  requestMs: 30_000,
  keepAliveMs: 5_000,
  connections: 64,
  /** Requests being answered at once; more get 503 at once rather than a queue. */
  inFlight: 16,
  /** An answer that takes longer (a Redis that does not answer) is a 503. */
  answerMs: 25_000,
  /** A board change's JSON body (retry, promote, clean…). */
  bodyBytes: 64 * 1024,
  /** How long a close waits for the requests in hand. */
  closeMs: 5_000,
  /** A Redis that does not PING back within this is not ready. */
  readyPingMs: 2_000,
};

const PROBES = new Set(['/healthz', '/readyz']);

export async function startHttpServer(options: HttpServerOptions): Promise<RunningHttpServer> {
  const observations = new ObservationCache({
    observe: (session) => observeFleet(session),
    maxAgeMs: options.observationMaxAgeMs ?? 15_000,
  });
  const queues = new HostQueues();
  const metrics = new FleetMetrics(options.process, observations, queues);
  const board = queueBoard({ writable: options.queuesWritable, title: 'vfleet host queues' });
  let lastSession: FleetSession | undefined;

  /** The process's session; a new one (a new spec) gets its queues listed and observed. */
  const current = (): FleetSession => {
    const session = options.process.session();
    if (!session) throw new HttpError(503, 'starting: the fleet is not open yet');
    if (session !== lastSession) {
      lastSession = session;
      queues.of(session, (set) => board.show(set));
      observations.warm(session);
    }
    return session;
  };

  const answer = async (request: IncomingMessage, response: ServerResponse, path: string) => {
    if (path === '/healthz') return send(response, request, 200, 'text/plain', 'ok\n');
    if (path === '/readyz') {
      const why = await notReady();
      return why === undefined
        ? send(response, request, 200, 'text/plain', 'ready\n')
        : send(response, request, 503, 'text/plain', `not ready: ${why}\n`);
    }
    if (path === '/metrics') {
      current();
      const text = await metrics.render();
      return send(response, request, 200, metrics.registry.contentType, text);
    }
    if (path === '/') return send(response, request, 200, 'text/html', HOME);
    if (path === '/reports') return redirect(response, REPORTS_PATH);
    if (path.startsWith(REPORTS_PATH)) {
      const html = await reportPage(path, current(), observations, options.renderReport);
      return send(response, request, 200, 'text/html', html);
    }
    throw new HttpError(404, `nothing at ${JSON.stringify(path.slice(0, 80))}: see /`);
  };

  const notReady = async (): Promise<string | undefined> => {
    const session = options.process.session();
    if (!session) return 'starting';
    const pong = await within(
      LIMITS.readyPingMs,
      session.connection.redis.ping().catch(() => 'error'),
      'timeout',
    );
    if (pong !== 'PONG') return `Redis ${session.connection.url} does not answer`;
    return options.process.notReady();
  };

  let inFlight = 0;
  /** Runs one answer within the bounds: requests at once, and the time an answer may take. */
  const bounded = async (act: (late: Promise<never>) => Promise<void>) => {
    if (inFlight >= LIMITS.inFlight) throw new HttpError(503, 'busy: too many requests at once');
    inFlight++;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new HttpError(503, 'timed out: the fleet did not answer in time')),
        LIMITS.answerMs,
      );
    });
    try {
      await act(late);
    } finally {
      clearTimeout(timer);
      inFlight--;
    }
  };

  const handle = async (request: IncomingMessage, response: ServerResponse) => {
    const method = request.method ?? 'GET';
    const path = pathOf(request.url);
    // A forge signs its webhook instead of logging in: the signature is its only credential.
    const hook = path === WEBHOOK_PATH ? options.gitWebhook : undefined;
    if (hook)
      return bounded(async (late) => {
        const answer = await Promise.race([answerWebhook(request, hook), late]);
        send(response, request, answer.status, 'text/plain', `${answer.text}\n`);
      });
    if (path === WEBHOOK_PATH)
      throw new HttpError(
        404,
        'no webhook here: the controller serves it with --git and a secret (VFLEET_WEBHOOK_SECRET or --webhook-secret-file)',
      );
    const toBoard = path === BOARD_PATH || path.startsWith(`${BOARD_PATH}/`);
    const reading = method === 'GET' || method === 'HEAD';
    if (
      !PROBES.has(path) &&
      options.credentials &&
      !authorized(request.headers.authorization, options.credentials)
    )
      throw new HttpError(401, 'credentials required', {
        'www-authenticate': 'Basic realm="vfleet", charset="UTF-8"',
      });
    if (!reading && !(toBoard && options.queuesWritable))
      throw new HttpError(
        405,
        toBoard
          ? 'the queue board is read-only (--http-queues-write)'
          : `${method} is not served here`,
        {
          allow: 'GET, HEAD',
        },
      );
    refuseUnboundedBody(request, reading ? 0 : LIMITS.bodyBytes);
    await bounded(async (late) => {
      if (toBoard) {
        current();
        // The board writes its answer itself, possibly after a deadline: then only the
        // connection can be dropped (the catch below), and what it does later must not throw.
        const served = board.handle(request, response);
        served.catch(() => undefined);
        await Promise.race([served, late]).catch((e: unknown) => {
          if (e instanceof HttpError) response.destroy();
          throw e;
        });
        return;
      }
      await Promise.race([answer(request, response, path), late]);
    });
  };

  const server = createServer(
    {
      maxHeaderSize: LIMITS.headerBytes,
      headersTimeout: LIMITS.headersMs,
      requestTimeout: LIMITS.requestMs,
      keepAliveTimeout: LIMITS.keepAliveMs,
    },
    (request, response) => {
      // A write after the connection went (a client gone, a board answer past its deadline)
      // is nothing to report.
      response.on('error', () => undefined);
      handle(request, response).catch((e: unknown) => {
        const status = e instanceof HttpError ? e.status : 500;
        const message = e instanceof HttpError ? e.message : `error: ${redactedMessage(e)}`;
        if (status >= 500)
          options.log?.(
            `vfleet http: ${request.method} ${pathOf(request.url)}: ${status} ${message}`,
          );
        if (response.headersSent || response.destroyed) {
          response.destroy();
          return;
        }
        const headers = e instanceof HttpError ? e.headers : {};
        for (const [k, v] of Object.entries(headers)) response.setHeader(k, v);
        // A body left unread would otherwise be drained: close the connection instead (unless
        // the route drains it itself and said so).
        if (hasBody(request) && headers.connection === undefined)
          response.setHeader('connection', 'close');
        send(response, request, status, 'text/plain', `${message.split('\n')[0]}\n`);
      });
    },
  );
  server.maxConnections = LIMITS.connections;
  await new Promise<void>((resolve, reject) => {
    const refused = (e: NodeJS.ErrnoException) => reject(listenError(options.listen, e));
    server.once('error', refused);
    server.listen(options.listen.port, options.listen.host, () => {
      server.off('error', refused);
      resolve();
    });
  });
  // A malformed request, headers too large or too slow: answered as Node would, the connection
  // closed; a socket already broken is only closed.
  server.on('clientError', (e: NodeJS.ErrnoException, socket) => {
    if (!socket.writable) return void socket.destroy();
    const status =
      e.code === 'HPE_HEADER_OVERFLOW'
        ? '431 Request Header Fields Too Large'
        : e.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? '408 Request Timeout'
          : '400 Bad Request';
    socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
  });
  const bound = server.address() as AddressInfo;
  return {
    url: `http://${formatAddress(bound.address, bound.port)}`,
    metrics,
    warm() {
      try {
        current();
      } catch {
        // not open yet: the first request opens it
      }
    },
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const timer = setTimeout(() => server.closeAllConnections(), LIMITS.closeMs);
      await closed;
      clearTimeout(timer);
      await queues.close();
    },
  };
}

/** Why the server could not listen, as the one line a user is shown (exit 1, not a bug). */
function listenError(listen: ListenAddress, e: NodeJS.ErrnoException): VfleetError {
  const where = formatAddress(listen.host, listen.port);
  const why: Record<string, string> = {
    EADDRINUSE: 'the address is in use (another process listens there)',
    EADDRNOTAVAIL: 'the address is not one of this machine’s',
    EACCES: 'permission denied (a port below 1024 needs privileges)',
    ENOTFOUND: 'the host name does not resolve',
    EAI_AGAIN: 'the host name does not resolve',
  };
  return new VfleetError(
    'http-listen',
    `--http ${where}: cannot listen: ${why[e.code ?? ''] ?? e.code ?? redactedMessage(e)}`,
  );
}

/** The path of a request target, without its query; `/` for anything unparsable. */
function pathOf(url: string | undefined): string {
  try {
    return new URL(url ?? '/', 'http://x').pathname;
  } catch {
    return '/';
  }
}

function hasBody(request: IncomingMessage): boolean {
  const length = request.headers['content-length'];
  return (
    request.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')
  );
}

/**
 * Refuses a body this server would have to read beyond `maxBytes`: a chunked one (no length to
 * check first) or a longer one. A route that takes no body takes none at all.
 */
function refuseUnboundedBody(request: IncomingMessage, maxBytes: number): void {
  const length = request.headers['content-length'];
  if (request.headers['transfer-encoding'] !== undefined)
    throw new HttpError(
      maxBytes === 0 ? 413 : 411,
      maxBytes === 0 ? 'this request takes no body' : 'send a Content-Length',
    );
  if (length !== undefined && Number(length) > maxBytes)
    throw new HttpError(
      413,
      maxBytes === 0 ? 'this request takes no body' : `a body is at most ${maxBytes} bytes`,
    );
}

function send(
  response: ServerResponse,
  request: IncomingMessage,
  status: number,
  type: string,
  body: string,
): void {
  const bytes = Buffer.from(body, 'utf8');
  response.statusCode = status;
  response.setHeader('content-type', type.includes('charset') ? type : `${type}; charset=utf-8`);
  response.setHeader('content-length', bytes.length);
  response.setHeader('cache-control', 'no-store');
  response.setHeader('x-content-type-options', 'nosniff');
  if (type === 'text/html')
    response.setHeader('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'");
  response.end(request.method === 'HEAD' ? undefined : bytes);
}

function redirect(response: ServerResponse, location: string): void {
  response.statusCode = 301;
  response.setHeader('location', location);
  response.setHeader('content-length', 0);
  response.end();
}

const HOME = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vfleet</title>
<style>body{font:14px/1.4 system-ui,sans-serif;margin:2em}</style></head><body>
<h1>vfleet</h1>
<ul>
<li><a href="/metrics">/metrics</a> — Prometheus metrics (docs/metrics.md)</li>
<li><a href="/queues">/queues</a> — the host queues (Bull Board)</li>
<li><a href="/reports/">/reports/</a> — the license, patch and failover audits</li>
<li><a href="/healthz">/healthz</a>, <a href="/readyz">/readyz</a> — probes</li>
</ul></body></html>
`;
