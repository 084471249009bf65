// Notifications (docs/gitops.md, "Notifications"): the controller's events that an operator
// wants pushed — a sync failed, the fleet's health degraded, a host lost, a failover done, a
// license shortfall, patch non-compliance — POSTed as JSON to webhooks, signed with HMAC-SHA256
// (`X-Vfleet-Signature-256: sha256=<hex>` over the exact body, GitHub's scheme), delivered
// through a BullMQ queue of the fleet with retries and exponential backoff, so a receiver that is
// down or slow never holds a reconcile up. The secret comes from the environment
// (VFLEET_NOTIFY_SECRET) or a file, is read by the sender when it signs, and never enters a
// job, an event or a log.
import { createHmac } from 'node:crypto';
import { auditObserved } from '../app/audit.js';
import type { FleetSession } from '../app/session.js';
import { VfleetError } from '../model/errors.js';
import type { RedisClient } from '../state/redis-client.js';

export const NOTIFY_EVENTS = [
  'sync-failed',
  'health-degraded',
  'host-lost',
  'failover-done',
  'license-shortfall',
  'patch-noncompliant',
] as const;
export type NotifyEvent = (typeof NOTIFY_EVENTS)[number];

export interface NotifyOptions {
  readonly urls: readonly string[];
  readonly events: readonly NotifyEvent[];
  /** Where the secret is: the environment variable's value, or a file's first line. */
  readonly secret: () => string | undefined;
  /** Delivery attempts (default 8: 1 s, 2 s, 4 s … about 4 min in all). */
  readonly attempts?: number;
  readonly timeoutMs?: number;
}

export function checkNotifyUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new VfleetError('usage', `--notify ${JSON.stringify(url.slice(0, 100))} is not a URL`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')
    throw new VfleetError('usage', `--notify takes an http or https URL, not ${parsed.protocol}`);
  if (parsed.username || parsed.password)
    throw new VfleetError(
      'usage',
      '--notify URLs carry no credentials: the body is signed with VFLEET_NOTIFY_SECRET instead',
    );
  return parsed.toString();
}

export function signature(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

interface NotifyJob {
  readonly url: string;
  readonly event: NotifyEvent;
  readonly body: string;
}

/** The controller's notifier: `send` enqueues and returns at once; a worker delivers. */
export class Notifier {
  private queue: import('bullmq').Queue<NotifyJob> | undefined;
  private worker: import('bullmq').Worker<NotifyJob> | undefined;
  private readonly pending = new Set<Promise<unknown>>();

  constructor(
    private readonly options: NotifyOptions,
    private readonly fleet: string,
  ) {}

  async start(connect: () => RedisClient, prefix: string): Promise<void> {
    if (this.options.urls.length === 0) return;
    const { Queue, Worker } = await import('bullmq');
    const timeoutMs = this.options.timeoutMs ?? 10_000;
    this.queue = new Queue<NotifyJob>('notify', { connection: connect(), prefix });
    this.worker = new Worker<NotifyJob>(
      'notify',
      async (job) => {
        const secret = this.options.secret();
        const headers: Record<string, string> = {
          'content-type': 'application/json',
          'user-agent': 'vfleet-notify',
          'x-vfleet-event': job.data.event,
          'x-vfleet-delivery': String(job.id),
        };
        if (secret) headers['x-vfleet-signature-256'] = signature(secret, job.data.body);
        const response = await fetch(job.data.url, {
          method: 'POST',
          headers,
          body: job.data.body,
          signal: AbortSignal.timeout(timeoutMs),
          redirect: 'error',
        }).catch((e: Error) => {
          // The URL only: never a header (the signature) or the body.
          throw new Error(
            `${new URL(job.data.url).origin}: ${e.name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : e.message}`,
          );
        });
        await response.body?.cancel().catch(() => undefined);
        if (!response.ok)
          throw new Error(`${new URL(job.data.url).origin} answered ${response.status}`);
      },
      { connection: connect(), prefix, concurrency: 4 },
    );
    // BullMQ prints an error nobody listens for: listen, say nothing secret.
    this.worker.on('error', () => undefined);
    this.queue.on('error', () => undefined);
  }

  /** Enqueues one notification per webhook, if the event is wanted; never throws, never waits. */
  send(event: NotifyEvent, fields: Record<string, unknown>, at: number): void {
    if (!this.queue || !this.options.events.includes(event)) return;
    const body = JSON.stringify({
      formatVersion: '1',
      fleet: this.fleet,
      event,
      at: new Date(at).toISOString(),
      ...fields,
    });
    for (const url of this.options.urls) {
      const added = this.queue
        .add(
          event,
          { url, event, body },
          {
            attempts: this.options.attempts ?? 8,
            backoff: { type: 'exponential', delay: 1_000 },
            removeOnComplete: 1_000,
            removeOnFail: 1_000,
          },
        )
        .catch(() => undefined);
      this.pending.add(added);
      void added.finally(() => this.pending.delete(added));
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.pending);
    await this.worker?.close().catch(() => undefined);
    await this.queue?.close().catch(() => undefined);
  }
}

/** The controller's events that are pushed to webhooks, and as what. */
const NOTIFIED: Readonly<Record<string, NotifyEvent>> = {
  'reconcile-failed': 'sync-failed',
  'sync-aborted': 'sync-failed',
  'host-lost': 'host-lost',
  restarted: 'failover-done',
};

export function notifiedAs(type: string): NotifyEvent | undefined {
  return NOTIFIED[type];
}

/**
 * After each reconcile, when a webhook wants them: the license and patch audits of what runs,
 * and a notification when a shortfall or non-compliance appears (not again while it lasts).
 */
export class ComplianceWatch {
  private shortfall = 0;
  private nonCompliant = 0;

  constructor(
    private readonly notifier: Notifier,
    private readonly options: NotifyOptions | undefined,
  ) {}

  async check(session: FleetSession, at: number): Promise<void> {
    const wants = this.options?.events ?? [];
    if (!this.options?.urls.length) return;
    if (!wants.includes('license-shortfall') && !wants.includes('patch-noncompliant')) return;
    const report = await auditObserved(
      session,
      ['licenses', 'patches'],
      new Date(at).toISOString(),
    ).catch(() => undefined);
    if (!report) return;
    const short = report.summary.licenses?.shortfall ?? 0;
    // Below a baseline: not patched yet, or its last patch failed.
    const behind =
      (report.summary.patches?.nonCompliant ?? 0) + (report.summary.patches?.failed ?? 0);
    if (short > 0 && this.shortfall === 0)
      this.notifier.send(
        'license-shortfall',
        { pools: short, summary: report.summary.licenses },
        at,
      );
    if (behind > 0 && this.nonCompliant === 0)
      this.notifier.send(
        'patch-noncompliant',
        { instances: behind, summary: report.summary.patches },
        at,
      );
    this.shortfall = short;
    this.nonCompliant = behind;
  }
}
