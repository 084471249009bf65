// The one place vfleet makes Redis clients (src/state/README.md, "Clients"). Every client — the
// session's, each BullMQ Queue/Worker/FlowProducer connection, and the copies BullMQ makes of
// them with duplicate() — is made here, so every one has an `error` listener (without one,
// ioredis and BullMQ print the raw error, whose HELLO/AUTH arguments carry the password) that
// reports only a redacted message, and every one is watched: when a client cannot reach the
// server for `lostAfterMs`, the store is declared lost, every client is disconnected (so nothing
// waits on it any more and nothing retries in the background), and `lost` fires once with the
// one message a user is shown. A client is an ioredis `Redis` — one server, or the master a
// Sentinel names (its `sentinels` in the options) — or, for a Cluster, an ioredis `Cluster` on
// the seed nodes, each node's connection made with the same options (docs/redis.md).
import { Cluster, type ClusterOptions, Redis, type RedisOptions } from 'ioredis';
import { VfleetError } from '../model/errors.js';
import { redactedMessage } from './redact.js';
import type { RedisClient } from './redis-client.js';
import type { RedisAddress } from './redis-url.js';
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
  /** A Cluster's seed nodes: every client is then a `Cluster`, the options each node's. */
  readonly clusterNodes?: readonly RedisAddress[];
  /**
   * Brings the server back while a client is down (the private redis-server, whose only
   * supervisor is vfleet: connect-redis.ts); tried at most every `REVIVE_EVERY_MS`.
   */
  readonly revive?: () => Promise<void>;
}

/** How long a client is down before `revive` is tried, and how often it is tried again. */
const REVIVE_EVERY_MS = 1_000;

/** Options that are the Cluster's own, not a node connection's (`open`'s `extra` may hold them). */
const CLUSTER_LEVEL = ['lazyConnect', 'enableAutoPipelining', 'enableOfflineQueue'] as const;

export { lostStore } from './store-loss.js';

export class RedisClients {
  readonly shown: string;
  readonly lostAfterMs: number;
  private readonly base: RedisOptions;
  private readonly debug: (message: string) => void;
  private readonly clusterNodes: readonly RedisAddress[] | undefined;
  private readonly live = new Set<RedisClient>();
  /** Clients whose connection is down, and since when (epoch ms). */
  private readonly down = new Map<RedisClient, number>();
  private lastError: string | undefined;
  private connected = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly revive: (() => Promise<void>) | undefined;
  private reviving: Promise<void> | undefined;
  private revivedAt = 0;
  private readonly reconnected = new Set<() => void>();
  private readonly controller = new AbortController();
  /** Aborted, with the user-facing VfleetError as its reason, when the store is lost. */
  readonly signal: AbortSignal = this.controller.signal;

  private readonly retry = (times: number): number | null =>
    this.connected && !this.signal.aborted
      ? Math.min(50 * 2 ** times, MAX_RECONNECT_DELAY_MS)
      : null;

  constructor(base: RedisOptions, options: RedisClientsOptions) {
    this.shown = options.shown;
    this.lostAfterMs = options.lostAfterMs ?? DEFAULT_LOST_AFTER_MS;
    this.debug = options.debug ?? (() => undefined);
    this.clusterNodes = options.clusterNodes;
    this.revive = options.revive;
    this.base = {
      connectTimeout: 5_000,
      ...base,
      // ioredis would otherwise keep a stack per command and print it with its errors.
      showFriendlyErrorStack: false,
      // The first connection fails fast with a clear message (nothing to wait for); once one
      // client was connected, a lost connection is retried until the store counts as lost.
      retryStrategy: this.retry,
      // Asking a Sentinel for the master follows the same strategy: none before the first
      // connection (a wrong address fails at once; ioredis would ask for ever), a backoff after.
      ...(base.sentinels ? { sentinelRetryStrategy: this.retry } : {}),
    };
  }

  /** True when every client is a Cluster. */
  get cluster(): boolean {
    return this.clusterNodes !== undefined;
  }

  /** A new client on the store, with `extra` options over the base ones. */
  open(extra: RedisOptions = {}): RedisClient {
    if (this.clusterNodes === undefined) return this.watch(new Redis({ ...this.base, ...extra }));
    return this.watch(this.newCluster(this.clusterNodes, { ...this.base, ...extra }));
  }

  /**
   * A Cluster whose node connections have `options` (those of them that are the Cluster's own
   * go to it). Its reconnects follow the same strategy as a server's; a slot whose master is
   * failing over is retried for as long as a lost connection is (`lostAfterMs`).
   */
  private newCluster(nodes: readonly RedisAddress[], options: RedisOptions): Cluster {
    const { retryStrategy, ...node } = options;
    const own: ClusterOptions = {};
    for (const key of CLUSTER_LEVEL) {
      if (node[key] !== undefined) (own as Record<string, unknown>)[key] = node[key];
      delete node[key];
    }
    return new Cluster(
      nodes.map((n) => ({ host: n.host, port: n.port })),
      {
        ...own,
        showFriendlyErrorStack: false,
        clusterRetryStrategy: retryStrategy ?? null,
        // A node's connection within a Cluster reconnects as the Cluster does.
        ...(retryStrategy ? { clusterNodeRetryStrategy: retryStrategy } : {}),
        // A slot's master that stopped answering is failed over by the Cluster in a node
        // timeout or so: its commands wait for that (CLUSTERDOWN, TRYAGAIN) rather than fail.
        retryDelayOnClusterDown: 200,
        retryDelayOnTryAgain: 200,
        slotsRefreshTimeout: 5_000,
        redisOptions: node,
      },
    );
  }

  /** The last error a client reported, redacted; for messages. */
  lastErrorMessage(): string | undefined {
    return this.lastError;
  }

  private watch<C extends RedisClient>(client: C): C {
    this.live.add(client);
    const onError = (e: unknown) => {
      // A Cluster that reached none of its nodes says "Failed to refresh slots cache."; why is
      // the last node's error it carries (a refused connection, a wrong password).
      const cause = (e as { lastNodeError?: unknown } | null)?.lastNodeError;
      const message = redactedMessage(cause ?? e);
      // "Connection is closed." follows the error that closed it (ECONNREFUSED…): keep that.
      if (this.lastError === undefined || !/^Connection is closed/.test(message)) {
        this.lastError = message;
      }
      this.debug(`redis ${this.shown}: ${this.lastError}`);
    };
    client.on('error', onError);
    // A Cluster reports its nodes' errors apart; each may carry the AUTH arguments too.
    if (client instanceof Cluster) client.on('node error', onError);
    client.on('close', () => {
      if (!this.down.has(client)) this.down.set(client, Date.now());
      this.arm();
    });
    client.on('ready', () => {
      this.connected = true;
      // Back after a loss: the server may be another one now (restarted, failed over).
      if (this.down.delete(client)) for (const listener of this.reconnected) listener();
    });
    client.on('end', () => {
      this.live.delete(client);
      this.down.delete(client);
    });
    endsWhenDisconnected(client);
    // BullMQ copies a connection it is given (a worker's blocking connection, QueueEvents):
    // the copy is made here too, so it has the listeners and is watched like the original.
    if (client instanceof Cluster) {
      // BullMQ asks a Cluster for a copy as `duplicate(undefined, { redisOptions })`.
      const original = client.options;
      (client as Cluster).duplicate = ((
        nodes?: Array<{ host?: string; port?: number } | string | number>,
        override?: ClusterOptions,
      ) => {
        const copy = new Cluster(nodes ?? this.clusterNodes?.map((n) => ({ ...n })) ?? [], {
          ...original,
          ...(override ?? {}),
          redisOptions: { ...original.redisOptions, ...(override?.redisOptions ?? {}) },
        });
        return this.watch(copy);
      }) as Cluster['duplicate'];
    } else {
      const redis = client as Redis;
      redis.duplicate = ((override?: Partial<RedisOptions>) =>
        this.watch(new Redis({ ...redis.options, ...(override ?? {}) }))) as Redis['duplicate'];
    }
    // Made after the store was lost (BullMQ closing, a late duplicate): it must not start a
    // connection loop of its own.
    if (this.signal.aborted) this.disconnectAll();
    return client;
  }

  /**
   * Calls `listener` each time a client whose connection was lost is ready again — the server
   * restarted, failed over, or the network came back: what it lost is for the caller to find
   * out (`keyServersIdentity`). Returns the unsubscribe.
   */
  onReconnect(listener: () => void): () => void {
    this.reconnected.add(listener);
    return () => this.reconnected.delete(listener);
  }

  private arm(): void {
    if (this.timer !== undefined) return;
    if (!Number.isFinite(this.lostAfterMs) && this.revive === undefined) return;
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
    else if (
      this.revive &&
      this.reviving === undefined &&
      now - oldest >= REVIVE_EVERY_MS &&
      now - this.revivedAt >= REVIVE_EVERY_MS
    ) {
      const revive = this.revive;
      this.reviving = revive()
        .catch((e) => this.debug(`reviving ${this.shown}: ${redactedMessage(e)}`))
        .finally(() => {
          this.reviving = undefined;
          this.revivedAt = Date.now();
        });
    }
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
   * Drops every client at once, reconnecting ones too: a daemon stopping while its Redis does not
   * answer gives up instead of waiting for it (pending commands fail).
   */
  abandon(): void {
    for (const client of this.live) if (client.status !== 'end') client.disconnect();
    this.down.clear();
  }

  /**
   * Ends every client without waiting for a server that may not answer, and so fails every
   * command still queued on them ("Connection is closed"), reconnecting ones too
   * (`endsWhenDisconnected`).
   */
  private disconnectAll(): void {
    for (const client of this.live) if (client.status !== 'end') client.disconnect();
    this.down.clear();
  }
}

/**
 * ioredis's disconnect() on a client between two reconnect attempts (`reconnecting`) cancels the
 * next attempt but neither ends the client nor fails the commands it queued: it stays
 * `reconnecting` for ever, and whoever waits for its `end` or for one of those commands waits for
 * ever. BullMQ closing a worker does both (its blocking connection's `end`, the BZPOPMIN queued
 * on it): an apply that stopped its workers just after Redis restarted — some of their
 * connections still in their backoff — hung for good. Such a client is ended the way ioredis ends
 * one that never connected (status `wait`: closed at once, its queue failed with "Connection is
 * closed."), a Cluster likewise.
 */
function endsWhenDisconnected(client: RedisClient): void {
  const disconnect = client.disconnect.bind(client);
  client.disconnect = ((reconnect?: boolean) => {
    if (!reconnect && client.status === 'reconnecting') {
      (client as { status: string }).status = 'wait';
    }
    disconnect(reconnect);
  }) as typeof client.disconnect;
}
