// REDIS_URL → where vfleet's Redis is, and the URL as it may be shown. Four forms (docs/redis.md):
//
//   redis://[user[:password]@]host[:port][/db]             one server (rediss:// over TLS)
//   redis-sentinel://[user[:password]@]h1[:p1][,h2[:p2]…][/db]#master   through Sentinel, as
//                                    lettuce's RedisURI writes it (rediss-sentinel:// over TLS;
//                                    `?sentinelMasterId=` for the master's name also works)
//   redis-cluster://[user[:password]@]h1[:p1][,h2[:p2]…]   a Cluster, from these seed nodes
//                                    (rediss-cluster:// over TLS)
//
// The password goes into the options and nowhere else: messages and the shown URL carry `***`,
// and no error here quotes the URL it could not read (it may hold the password). A Sentinel's
// user and password are the master's and replicas' (the data nodes'); the Sentinels themselves
// are asked without one.
import { VfleetError } from '../model/errors.js';
import { rememberSecret } from './redact.js';

export interface RedisAddress {
  readonly host: string;
  readonly port: number;
}

interface TargetBase {
  readonly username: string | undefined;
  readonly password: string | undefined;
  readonly tls: boolean;
  /** The URL with the password as `***`: safe to print and log. */
  readonly redacted: string;
}

/** One server: redis:// or rediss://. */
export interface RedisEndpoint extends TargetBase, RedisAddress {
  readonly kind: 'standalone';
  readonly db: number;
}

/** The master a group of Sentinels names: redis-sentinel:// or rediss-sentinel://. */
export interface SentinelTarget extends TargetBase {
  readonly kind: 'sentinel';
  readonly sentinels: readonly RedisAddress[];
  /** The master's name, as the Sentinels know it (`sentinel monitor <name> …`). */
  readonly name: string;
  readonly db: number;
}

/** A Redis Cluster, reached through any of its seed nodes: redis-cluster:// or rediss-cluster://. */
export interface ClusterTarget extends TargetBase {
  readonly kind: 'cluster';
  readonly nodes: readonly RedisAddress[];
  /** Always 0: a Cluster has only database 0. */
  readonly db: 0;
}

export type RedisTarget = RedisEndpoint | SentinelTarget | ClusterTarget;

const FORMAT =
  'redis://[user[:password]@]host[:port][/db] (rediss:// for TLS), redis-sentinel://[user[:password]@]host1:port1,host2:port2[/db]#mastername or redis-cluster://[user[:password]@]host1:port1,host2:port2';

const SENTINEL_PORT = 26379;
const REDIS_PORT = 6379;

function urlError(reason: string): VfleetError {
  return new VfleetError('redis-url', `REDIS_URL ${reason}; expected ${FORMAT}`);
}

function decode(part: string, what: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw urlError(`has a badly percent-encoded ${what}`);
  }
}

const SCHEMES: Record<string, { kind: RedisTarget['kind']; tls: boolean }> = {
  redis: { kind: 'standalone', tls: false },
  rediss: { kind: 'standalone', tls: true },
  'redis-sentinel': { kind: 'sentinel', tls: false },
  'rediss-sentinel': { kind: 'sentinel', tls: true },
  'redis-cluster': { kind: 'cluster', tls: false },
  'rediss-cluster': { kind: 'cluster', tls: true },
};

export function parseRedisUrl(text: string): RedisTarget {
  const trimmed = text.trim();
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(trimmed);
  if (!scheme) throw urlError('is not a URL');
  const name = (scheme[1] as string).toLowerCase();
  const form = SCHEMES[name];
  if (form === undefined) {
    throw urlError(`has the scheme "${name.slice(0, 20)}:", which vfleet does not support`);
  }
  // The authority ends at the first '/', '?' or '#'; the user info is what is before its last
  // '@' (a '/', '?', '#' or '@' in a password must be percent-encoded, as in any URL).
  const rest = trimmed.slice(scheme[0].length);
  const authorityEnd = rest.search(/[/?#]/);
  const authority = authorityEnd < 0 ? rest : rest.slice(0, authorityEnd);
  const tail = authorityEnd < 0 ? '' : rest.slice(authorityEnd);
  const at = authority.lastIndexOf('@');
  const userInfo = at < 0 ? undefined : authority.slice(0, at);
  const hostList = at < 0 ? authority : authority.slice(at + 1);
  const { username, password, shownUser } = credentials(userInfo);

  const fragmentAt = tail.indexOf('#');
  const fragment = fragmentAt < 0 ? undefined : tail.slice(fragmentAt + 1);
  const beforeFragment = fragmentAt < 0 ? tail : tail.slice(0, fragmentAt);
  const queryAt = beforeFragment.indexOf('?');
  const path = (queryAt < 0 ? beforeFragment : beforeFragment.slice(0, queryAt)).replace(/^\//, '');
  const query = new URLSearchParams(queryAt < 0 ? '' : beforeFragment.slice(queryAt + 1));
  if (path !== '' && !/^\d{1,5}$/.test(path)) {
    throw urlError('has a path that is not a database number');
  }
  const db = path === '' ? 0 : Number(path);
  const defaultPort = form.kind === 'sentinel' ? SENTINEL_PORT : REDIS_PORT;
  const addresses = hostList.split(',').map((one) => address(one, defaultPort));
  const shownHosts = addresses.map(shownAddress).join(',');
  const base = { username, password, tls: form.tls };

  if (form.kind === 'standalone') {
    // The one server's form stays as it was: a query is ignored, as a WHATWG parser would.
    if (addresses.length !== 1) {
      throw urlError(
        `names ${addresses.length} hosts; for several, use redis-sentinel:// or redis-cluster://`,
      );
    }
    const [only] = addresses as [RedisAddress];
    return {
      kind: 'standalone',
      ...base,
      ...only,
      db,
      redacted: `${name}://${shownUser}${shownHosts}/${db}`,
    };
  }
  for (const key of query.keys()) {
    if (!(form.kind === 'sentinel' && key === 'sentinelMasterId')) {
      throw urlError(`has the parameter "${key.slice(0, 30)}", which vfleet does not read`);
    }
  }
  if (form.kind === 'cluster') {
    if (fragment !== undefined)
      throw urlError('has a "#" part, which only redis-sentinel:// takes');
    if (db !== 0) throw urlError(`names database ${db}, but a Redis Cluster has only database 0`);
    return {
      kind: 'cluster',
      ...base,
      nodes: addresses,
      db: 0,
      redacted: `${name}://${shownUser}${shownHosts}`,
    };
  }
  const master =
    fragment !== undefined
      ? decode(fragment, 'master name')
      : (query.get('sentinelMasterId') ?? '');
  if (master === '') {
    throw urlError(
      "names no master: end it with #<name>, the master's name in the Sentinels' configuration",
    );
  }
  if (!/^[A-Za-z0-9._-]{1,100}$/.test(master)) {
    throw urlError('has a master name that is not letters, digits, ".", "_" or "-"');
  }
  return {
    kind: 'sentinel',
    ...base,
    sentinels: addresses,
    name: master,
    db,
    redacted: `${name}://${shownUser}${shownHosts}/${db}#${master}`,
  };
}

/** The user info's user and password, remembered as secret at once; how it may be shown. */
function credentials(userInfo: string | undefined): {
  username: string | undefined;
  password: string | undefined;
  shownUser: string;
} {
  if (userInfo === undefined) return { username: undefined, password: undefined, shownUser: '' };
  const colon = userInfo.indexOf(':');
  const rawUser = colon < 0 ? userInfo : userInfo.slice(0, colon);
  const rawPassword = colon < 0 ? '' : userInfo.slice(colon + 1);
  rememberSecret(rawPassword); // as written: percent-encoded, and before decoding can fail
  const username = rawUser === '' ? undefined : decode(rawUser, 'user name');
  const password = rawPassword === '' ? undefined : decode(rawPassword, 'password');
  // From here on, nothing vfleet prints can show it (redact.ts).
  rememberSecret(password);
  if (username !== undefined && !/^[\x21-\x7e]+$/.test(username)) {
    throw urlError('has a user name with spaces or control characters');
  }
  const shownUser =
    password !== undefined ? `${rawUser}:***@` : username !== undefined ? `${rawUser}@` : '';
  return { username, password, shownUser };
}

/** `host[:port]` or `[v6]:port`; IPv6 brackets are for the URL, a socket wants the bare address. */
function address(text: string, defaultPort: number): RedisAddress {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^[\]:/\s@]+))(?::(\d*))?$/.exec(text);
  if (!match)
    throw urlError(text === '' ? 'has no host' : 'has a host that is not a name or an address');
  const host = (match[1] ?? match[2] ?? '').toLowerCase();
  const port = match[3] === undefined || match[3] === '' ? defaultPort : Number(match[3]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw urlError('has an invalid port');
  return { host, port };
}

function shownAddress(a: RedisAddress): string {
  return `${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
}
