// `/queues`: Bull Board over the fleet's host queues (its Hono adapter, served by this server's
// own node:http through @hono/node-server's request listener — no other framework). Read-only
// unless the process was started with --http-queues-write: then an operator may retry, promote,
// clean or remove jobs from the browser. In read-only mode the board's API refuses every change
// itself (its per-queue readOnlyMode) and server.ts lets only GET and HEAD reach it besides.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { HonoAdapter } from '@bull-board/hono';
import { getRequestListener } from '@hono/node-server';
import { serveStatic } from '@hono/node-server/serve-static';
import { Hono } from 'hono';
import { redactedMessage } from '../state/redact.js';
import type { HostQueueSet } from './host-queues.js';

export const BOARD_PATH = '/queues';

/** Everything from this server: the board's scripts, styles (inline ones too), images, API. */
const BOARD_CSP =
  "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; object-src 'none'; base-uri 'self'; frame-ancestors 'none'";

export interface QueueBoard {
  /** Lists this set's queues (a new spec's hosts). */
  show(set: HostQueueSet): void;
  handle(request: IncomingMessage, response: ServerResponse): Promise<void>;
}

export function queueBoard(options: {
  readonly writable: boolean;
  readonly title: string;
}): QueueBoard {
  const adapter = new HonoAdapter(serveStatic);
  adapter.setBasePath(BOARD_PATH);
  const board = createBullBoard({
    queues: [],
    serverAdapter: adapter,
    options: {
      uiConfig: {
        boardTitle: options.title,
        miscLinks: [
          { text: 'Reports', url: '/reports/' },
          { text: 'Metrics', url: '/metrics' },
        ],
        hideDocsLink: true,
        // The board would run CLIENT LIST per queue on every poll: a thousand hosts, a thousand.
        showWorkers: false,
      },
    },
  });
  // The board's own handler answers with the error's message, and its stack in development: one
  // redacted line instead, always.
  adapter.setErrorHandler((error: Error) => ({
    status: 500,
    body: { error: redactedMessage(error) },
  }));
  const app = new Hono();
  // The board's page would load its fonts from Google: a fleet's operators' browsers tell a third
  // party whenever they look at the queues, and a board on an isolated network hangs on it. The
  // link goes, and a CSP keeps every fetch on this server.
  app.use(`${BOARD_PATH}/*`, async (c, next) => {
    await next();
    if (!c.res.headers.get('content-type')?.startsWith('text/html')) return;
    const html = (await c.res.text()).replace(/<link [^>]*fonts\.googleapis\.com[^>]*>/g, '');
    const headers = new Headers(c.res.headers);
    headers.delete('content-length');
    headers.set('content-security-policy', BOARD_CSP);
    c.res = new Response(html, { status: c.res.status, headers });
  });
  app.route(BOARD_PATH, adapter.registerPlugin());
  app.onError((error, c) => c.text(`error: ${redactedMessage(error)}\n`, 500));
  const listener = getRequestListener(app.fetch);
  return {
    show(set) {
      board.replaceQueues(
        [...set.queues.values()].map(
          (queue) => new BullMQAdapter(queue, { readOnlyMode: !options.writable }),
        ),
      );
    },
    handle: (request, response) => listener(request, response),
  };
}
