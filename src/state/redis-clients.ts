// The one place vfleet makes Redis clients (src/state/README.md, "Clients"). Every client — the
// session's, each BullMQ Queue/Worker/FlowProducer connection, and the copies BullMQ makes of
// them with duplicate() — is made here, so every one has an `error` listener (without one,
// ioredis and BullMQ print the raw error, whose HELLO/AUTH arguments carry the password) that
// reports only a redacted message, and every one is watched: when a client cannot reach the
// server for `lostAfterMs`, the store is declared lost, every client is disconnected (so nothing
// waits on it any more and nothing retries in the background), and `lost` fires once with the
// one message a user is shown.
import { Redis, type RedisOptions } from 'ioredis';
import { VfleetError } from '../model/errors.js';
import { redactedMessage } from './redact.js';
import { recordLostStore } from './store-loss.js';

/**
 * How long a client may fail to reconnect before the store counts as gone: long enough for a
 * dropped connection, a killed client or a server restarted by a supervisor to come back, short
 * enough that an apply whose Redis died says so within seconds (DESIGN: docs/reconcile.md,
 * "Crashes"). `VFLEET_REDIS_LOST_MS` overrides it.
 */
export const DEFAULT_LOST_AFTER_MS = 5_000;
const CHECK_EVERY_MS = 250;
/** Reconnect backoff, capped low: the loss is decided by time, not by a count of attempts. */
const MAX_RECONNECT_DELAY_MS = 500;

export interface RedisClientsOptions {
  /** Where, as it may be shown (no password). */
  readonly shown: string;
  /** Infinity: never give up (a standalone worker outlives a Redis restart). */
  readonly lostAfterMs?: number;
  readonly debug?: (message: string) => void;
}

export { lostStore } from './store-loss.js';

export class RedisClients {
  readonly shown: string;
  readonly lostAfterMs: number;
  private readonly base: RedisOptions;
  private readonly debug: (message: string) => void;
  private readonly live = new Set<Redis>();
  /** Clients whose connection is down, and since when (epoch ms). */
  private readonly down = new Map<Redis, number>();
  private lastError: string | undefined;
  private connected = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly controller = new AbortController();
  /** Aborted, with the user-facing VfleetError as its reason, when the store is lost. */
  readonly signal: AbortSignal = this.controller.signal;

  constructor(base: RedisOptions, options: RedisClientsOptions) {
    this.shown = options.shown;
    this.lostAfterMs = options.lostAfterMs ?? DEFAULT_LOST_AFTER_MS;
    this.debug = options.debug ?? (() => undefined);
    this.base = {
      connectTimeout: 5_000,
      ...base,
      // ioredis would otherwise keep a stack per command and print it with its errors.
      showFriendlyErrorStack: false,
      // The first connection fails fast with a clear message (nothing to wait for); once one
      // client was connected, a lost connection is retried until the store counts as lost.
      retryStrategy: (times) =>
        this.connected && !this.signal.aborted
          ? Math.min(50 * 2 ** times, MAX_RECONNECT_DELAY_MS)
          : null,
    };
  }

  /** A new client on the store, with `extra` options over the base ones. */
  open(extra: RedisOptions = {}): Redis {
    return this.watch(new Redis({ ...this.base, ...extra }));
  }

  /** The last error a client reported, redacted; for messages. */
  lastErrorMessage(): string | undefined {
    return this.lastError;
  }

  private watch(client: Redis): Redis {
    this.live.add(client);
    client.on('error', (e: unknown) => {
      this.lastError = redactedMessage(e);
      this.debug(`redis ${this.shown}: ${this.lastError}`);
    });
    client.on('close', () => {
      if (!this.down.has(client)) this.down.set(client, Date.now());
      this.arm();
    });
    client.on('ready', () => {
      this.connected = true;
      this.down.delete(client);
    });
    client.on('end', () => {
      this.live.delete(client);
      this.down.delete(client);
    });
    // BullMQ copies a connection it is given (a worker's blocking connection, QueueEvents):
    // the copy is made here too, so it has the listeners and is watched like the original.
    client.duplicate = (override?: Partial<RedisOptions>) =>
      this.watch(new Redis({ ...client.options, ...(override ?? {}) }));
    // Made after the store was lost (BullMQ closing, a late duplicate): it must not start a
    // connection loop of its own.
    if (this.signal.aborted) this.disconnectAll();
    return client;
  }

  private arm(): void {
    if (this.timer !== undefined || !Number.isFinite(this.lostAfterMs)) return;
    this.timer = setInterval(() => this.check(), CHECK_EVERY_MS);
    this.timer.unref();
  }

  private check(): void {
    const now = Date.now();
    let oldest = now;
    for (const [client, since] of this.down) {
      // A client closed on purpose (quit, disconnect) is not a lost store.
      if (client.status === 'end') this.down.delete(client);
      else oldest = Math.min(oldest, since);
    }
    if (this.down.size === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
      return;
    }
    if (now - oldest >= this.lostAfterMs) this.declareLost();
  }

  private declareLost(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    if (this.signal.aborted) return;
    const seconds = Math.round(this.lostAfterMs / 100) / 10;
    const reason = this.lastError ?? 'connection closed';
    const lost = new VfleetError(
      'redis-lost',
      `the state store went away: Redis at ${this.shown} has not answered for ${seconds} s (${reason})`,
      { retryable: true },
    );
    recordLostStore(lost);
    this.disconnectAll();
    this.controller.abort(lost);
  }

  /**
   * Ends every client without waiting for a server that may not answer, and so fails every
   * command still queued on them ("Connection is closed"). A client between two reconnect
   * attempts is left to its next attempt, which the retry strategy now refuses: ioredis's
   * disconnect() at that moment cancels the attempt but neither ends the client nor fails its
   * queued commands, which would then wait for ever.
   */
  /**
   * Drops every client at once, reconnecting ones too: a daemon stopping while its Redis does not
   * answer gives up instead of waiting for it (pending commands fail).
   */
  abandon(): void {
    for (const client of this.live) if (client.status !== 'end') client.disconnect();
    this.down.clear();
  }

  private disconnectAll(): void {
    for (const client of this.live) if (client.status !== 'reconnecting') client.disconnect();
    this.down.clear();
  }
}
