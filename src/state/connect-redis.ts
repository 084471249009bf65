// Where vfleet's Redis is, and a client on it (docs/architecture.md, CLI v1): REDIS_URL when it is
// set, after checking that the server does not evict; otherwise the private redis-server of the
// current folder (redis-server.ts), started or reused, waited for while it reads its AOF back.
// The password is kept out of every message: ioredis puts it in the arguments of the errors it
// raises for HELLO/AUTH, so those errors are never rethrown or attached as a cause, only their
// redacted message is quoted (redact.ts); every client is made by redis-clients.ts, which gives
// each an error listener and notices a store gone away.
import { setTimeout as delay } from 'node:timers/promises';
import { VfleetError } from '../model/errors.js';
import { refuseEviction } from './eviction-policy.js';
import { ping } from './raw-redis.js';
import { redactedMessage } from './redact.js';
import { isCluster, type RedisClient } from './redis-client.js';
import { DEFAULT_LOST_AFTER_MS, RedisClients } from './redis-clients.js';
import { ensureEmbeddedRedis, reviveEmbeddedRedis } from './redis-server.js';
import { clientsFor } from './redis-target.js';
import { parseRedisUrl, type RedisTarget } from './redis-url.js';
import { within } from './within.js';

export interface RedisConnection {
  /** A `Cluster` for redis-cluster://; a `Redis` otherwise (a Sentinel's master included). */
  readonly redis: RedisClient;
  /** What REDIS_URL names (undefined for the private server): the raw state read's way there. */
  readonly target?: RedisTarget;
  /** Where vfleet is connected, safe to show: the password is `***`. */
  readonly url: string;
  /** True when this is the private server of the folder, which `vfleet down` stops. */
  readonly embedded: boolean;
  /** Makes every further client (BullMQ's included) and says when the store went away. */
  readonly clients: RedisClients;
  /** Closes the client; an embedded server keeps running for the next command. */
  close(): Promise<void>;
}

export interface ConnectRedisOptions {
  /** The folder whose `.vfleet/` holds the private server. */
  readonly cwd: string;
  readonly env: NodeJS.ProcessEnv;
  /** Diagnostics for `VFLEET_DEBUG`; never given a password. */
  readonly debug?: (message: string) => void;
  /** How long a starting server may take to answer PING. */
  readonly startTimeoutMs?: number;
  /**
   * How long a lost connection may stay lost before the store counts as gone (default 5 s, or
   * VFLEET_REDIS_LOST_MS); Infinity for a daemon that waits for Redis to come back.
   */
  readonly lostAfterMs?: number;
}

const CLOSE_TIMEOUT_MS = 2_000;
/** How long a connected server has to answer the handshake (HELLO, AUTH, INFO). */
const HANDSHAKE_TIMEOUT_MS = 10_000;

export async function connectRedis(options: ConnectRedisOptions): Promise<RedisConnection> {
  const debug = options.debug ?? (() => undefined);
  const url = options.env.REDIS_URL;
  if (url !== undefined && url.trim() !== '') {
    const target = parseRedisUrl(url);
    refuseDebugWithPassword(target.password, [options.env.DEBUG, process.env.DEBUG]);
    const clients = clientsFor(target, { lostAfterMs: lostAfter(options), debug });
    const redis = await openClient(clients, {
      db: target.db,
      password: target.password,
      kind: target.kind,
      tls: target.tls,
      ...(target.kind === 'sentinel' ? { name: target.name } : {}),
    });
    await refuseEviction(redis, target.redacted, target);
    return connection(redis, clients, false, target);
  }
  const paths = await ensureEmbeddedRedis(options.cwd, options.env, {
    debug,
    startTimeoutMs: options.startTimeoutMs,
  });
  await waitWhileLoading(paths.socket, debug);
  const shown = `unix://${paths.socket}`;
  const clients = new RedisClients(
    { path: paths.socket },
    {
      shown,
      lostAfterMs: lostAfter(options),
      debug,
      // Gone (SIGKILLed): vfleet started it and is its only supervisor, so it starts it again.
      revive: async () => {
        if (await reviveEmbeddedRedis(options.cwd, options.env, debug)) {
          await waitWhileLoading(paths.socket, debug);
        }
      },
    },
  );
  const redis = await openClient(clients);
  await refuseEviction(redis, shown);
  return connection(redis, clients, true);
}

function lostAfter(options: ConnectRedisOptions): number {
  if (options.lostAfterMs !== undefined) return options.lostAfterMs;
  const fromEnv = Number(options.env.VFLEET_REDIS_LOST_MS);
  return Number.isFinite(fromEnv) && fromEnv > 0 ? fromEnv : DEFAULT_LOST_AFTER_MS;
}

/**
 * Whether DEBUG (the `debug` package's variable) turns on `namespace`, by that package's rules:
 * comma- or space-separated patterns, `*` a wildcard, a leading `-` excludes.
 */
export function debugEnables(debugVariable: string | undefined, namespace: string): boolean {
  const patterns = (debugVariable ?? '').split(/[\s,]+/).filter(Boolean);
  const matches = (pattern: string) =>
    new RegExp(`^${pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*?')}$`).test(
      namespace,
    );
  if (patterns.some((p) => p.startsWith('-') && matches(p.slice(1)))) return false;
  return patterns.some((p) => !p.startsWith('-') && matches(p));
}

/**
 * ioredis's debug output prints every command with its arguments, AUTH's password included;
 * vfleet cannot redact it, so it refuses to send a password while that output is on.
 */
function refuseDebugWithPassword(password: string | undefined, debugVariables: unknown[]): void {
  if (password === undefined) return;
  if (!debugVariables.some((d) => typeof d === 'string' && debugEnables(d, 'ioredis:redis'))) {
    return;
  }
  throw new VfleetError(
    'redis-debug-password',
    "DEBUG turns on ioredis's debug output, which would print the Redis password from REDIS_URL; unset DEBUG or exclude ioredis (add ,-ioredis:* to it)",
  );
}

function connection(
  redis: RedisClient,
  clients: RedisClients,
  embedded: boolean,
  target?: RedisTarget,
): RedisConnection {
  return {
    redis,
    ...(target ? { target } : {}),
    url: clients.shown,
    embedded,
    clients,
    async close() {
      if (clients.signal.aborted) return; // lost: every client is disconnected already
      const quit = redis.quit().then(
        () => true,
        () => false,
      );
      if (!(await within(CLOSE_TIMEOUT_MS, quit, false))) redis.disconnect();
    },
  };
}

async function openClient(
  clients: RedisClients,
  target: {
    readonly db?: number;
    readonly password?: string;
    readonly kind?: RedisTarget['kind'];
    readonly name?: string;
    readonly tls?: boolean;
  } = {},
): Promise<RedisClient> {
  const redis = clients.open({ lazyConnect: true });
  try {
    // connectTimeout covers the TCP connect only: a server that accepts and then says nothing
    // would leave the handshake waiting for ever.
    const ready = await within(
      HANDSHAKE_TIMEOUT_MS,
      redis.connect().then(() => true),
      false,
    );
    if (!ready) throw new Error(`no Redis reply within ${HANDSHAKE_TIMEOUT_MS / 1000} s`);
    // ioredis reports a refused SELECT (a db number past the server's `databases`) as an event
    // and carries on in db 0; vfleet would then read and write another fleet's database.
    if (target.db && !isCluster(redis)) await redis.select(target.db);
    if (target.kind === 'standalone') await refuseOtherMode(redis);
  } catch (e) {
    // Already ended after a fatal error; disconnecting again would arm a timer on a closed
    // stream that nothing clears, holding the process open for ioredis's disconnectTimeout.
    if (redis.status !== 'end') redis.disconnect();
    if (e instanceof VfleetError) throw e;
    const raw = clients.lastErrorMessage() ?? redactedMessage(e);
    // The reason is one line: a server's error text could carry more.
    const reason = /Unknown RESP type|Protocol error/.test(raw)
      ? 'the server does not speak the Redis protocol'
      : /^NOAUTH/.test(raw) && target.password === undefined
        ? 'NOAUTH: the server wants a password and REDIS_URL has none'
        : /No such master with that name/.test(raw)
          ? `the Sentinels know no master named "${target.name}" (the name after # in REDIS_URL)`
          : /^Connection is closed/.test(raw) && target.kind === 'cluster'
            ? target.tls
              ? 'none of the seed nodes answers, or none has a certificate this machine trusts (a private authority: NODE_EXTRA_CA_CERTS=<its certificate file>)'
              : 'none of the seed nodes answers'
            : /^All sentinels are unreachable.*Connection is closed/.test(raw)
              ? 'none of the Sentinels answers'
              : /cluster support disabled|unknown command 'cluster'/.test(raw)
                ? 'a seed node is not a Cluster node (for one server, use redis://; for Sentinels, redis-sentinel://)'
                : (raw.split('\n')[0] ?? '').slice(0, 200);
    const hint = /WRONGPASS|NOAUTH|AUTH/.test(reason)
      ? ' (check the user name and password in REDIS_URL)'
      : /DB index/.test(reason)
        ? ` (REDIS_URL names database ${target.db})`
        : '';
    throw new VfleetError(
      'redis-connect',
      `cannot connect to Redis at ${clients.shown}: ${reason}${hint}`,
      {
        retryable: true,
      },
    );
  }
  return redis;
}

/**
 * A redis:// URL that names a Cluster node or a Sentinel would half work (a Cluster node answers
 * MOVED for the slots it does not hold; a Sentinel holds no data): refused, with the form to use.
 */
async function refuseOtherMode(redis: RedisClient): Promise<void> {
  const info = await redis.info('server').catch(() => '');
  const mode = /^redis_mode:(\w+)/m.exec(info)?.[1];
  if (mode === 'cluster' || mode === 'sentinel') {
    throw new VfleetError(
      'redis-url',
      mode === 'cluster'
        ? 'REDIS_URL names a node of a Redis Cluster: use redis-cluster://host1:port1,host2:port2 (the nodes as seeds)'
        : 'REDIS_URL names a Sentinel: use redis-sentinel://host1:port1,host2:port2[/db]#mastername',
    );
  }
}

/** How long a restarted private server may take to read its AOF back before vfleet gives up. */
const LOAD_TIMEOUT_MS = 10 * 60_000;

/**
 * A private server restarted after a crash reads its AOF back first, answering `-LOADING` until it
 * is done: seconds for a large fleet's state and queues on a loaded machine (the crash soak saw
 * more than the 10 s a handshake may take). Wait for it, saying so, rather than fail.
 */
async function waitWhileLoading(socket: string, debug: (message: string) => void): Promise<void> {
  const deadline = Date.now() + LOAD_TIMEOUT_MS;
  let told = false;
  for (;;) {
    const reply = await ping(socket);
    if (!reply?.startsWith('-LOADING')) return;
    if (!told) debug(`the private redis-server is reading its AOF back; waiting (${socket})`);
    told = true;
    if (Date.now() > deadline) {
      throw new VfleetError(
        'redis-connect',
        `the private redis-server on ${socket} was still reading its AOF after ${LOAD_TIMEOUT_MS / 60_000} minutes`,
        { retryable: true },
      );
    }
    await delay(100);
  }
}
