// Plan's state read (state/raw-state-read.ts), started as early as the command can: from the
// spec's fleet name as read off the file without parsing it, before the rest of the command —
// the scheduler, the planner, ioredis — is even loaded, so that Redis builds the reply and
// sends the records while they load (loading modules turns the event loop, and the reply is
// taken in between) and the spec is parsed. Nothing it loads is more than it needs for that: no
// spec parser, no ioredis, nothing of the private server's management. It never starts a
// server: where none answers, the read fails, and the session reads as any command does
// (session.ts, prefetchState). (On a thread of its own, the read took no less time once it
// started this early, and the thread's start cost a tenth of a second of CPU.)
import type { StateReply } from '../state/fleet-state.js';
import { fleetKeys } from '../state/keys.js';
import { fetchStateRaw, type RawTarget } from '../state/raw-state-read.js';
import { embeddedRedisPaths } from '../state/redis-paths.js';
import { parseRedisUrl } from '../state/redis-url.js';
import { fleetNameHint } from './fleet-name-hint.js';

/** A state read on its way: for the fleet the spec's text names (check it once parsed). */
export interface StateReadStart {
  readonly fleet: string;
  readonly reply: Promise<StateReply>;
  /** Stops it: the spec turned out invalid, names another fleet, or no prefetch is wanted. */
  abandon(): void;
}

/** How long the raw read may take to connect. */
export const STATE_READ_CONNECT_MS = 1_000;

/**
 * Starts the fleet's state read; undefined when the spec's fleet name cannot be read without
 * parsing it (or is no fleet's name), or REDIS_URL cannot be read (the session reports it).
 */
export function startStateRead(
  file: string,
  options: { readonly cwd: string; readonly env: NodeJS.ProcessEnv },
): StateReadStart | undefined {
  const fleet = fleetNameHint(file);
  if (fleet === undefined) return undefined;
  let endpoint: RawTarget;
  try {
    fleetKeys(fleet); // a name no key can be made of is no fleet's
    endpoint = rawEndpoint(options.env.REDIS_URL, options.cwd);
  } catch {
    return undefined;
  }
  const abandon = new AbortController();
  const reply = fetchStateRaw(endpoint, fleet, STATE_READ_CONNECT_MS, abandon.signal);
  reply.catch(() => undefined); // whoever takes it reads again if it failed
  return { fleet, reply, abandon: () => abandon.abort() };
}

/**
 * Where the raw read connects: REDIS_URL's server, the master its Sentinels name, a node of its
 * Cluster; or the folder's private server.
 */
function rawEndpoint(url: string | undefined, cwd: string): RawTarget {
  if (url === undefined || url.trim() === '') return { path: embeddedRedisPaths(cwd).socket };
  const target = parseRedisUrl(url);
  const { username, password, db, tls } = target;
  switch (target.kind) {
    case 'standalone':
      return { host: target.host, port: target.port, username, password, db, tls };
    case 'sentinel':
      return { sentinels: target.sentinels, master: target.name, username, password, db, tls };
    case 'cluster':
      return { seeds: target.nodes, username, password, tls };
  }
}
