// REDIS_URL → connection options, and the URL as it may be shown. The password goes into the
// options and nowhere else: messages and the shown URL carry `***`, and no error here quotes the
// URL it could not read (it may hold the password).
import { VfleetError } from '../model/errors.js';
import { rememberSecret } from './redact.js';

export interface RedisEndpoint {
  readonly host: string;
  readonly port: number;
  readonly username: string | undefined;
  readonly password: string | undefined;
  readonly db: number;
  readonly tls: boolean;
  /** `redis://user:***@host:port/db`: safe to print and log. */
  readonly redacted: string;
}

const FORMAT = 'redis://[user[:password]@]host[:port][/db] or rediss://… for TLS';

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

export function parseRedisUrl(text: string): RedisEndpoint {
  let url: URL;
  try {
    url = new URL(text.trim());
  } catch {
    throw urlError('is not a URL');
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw urlError(`has the scheme "${url.protocol.slice(0, 20)}", which vfleet does not support`);
  }
  // A WHATWG parser keeps IPv6 brackets in `hostname`; a socket wants the bare address.
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (host === '') throw urlError('has no host');
  const port = url.port === '' ? 6379 : Number(url.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw urlError('has an invalid port');
  const path = url.pathname.replace(/^\//, '');
  if (path !== '' && !/^\d{1,5}$/.test(path)) {
    throw urlError('has a path that is not a database number');
  }
  const db = path === '' ? 0 : Number(path);
  rememberSecret(url.password); // as written: percent-encoded, and before decoding can fail
  const username = url.username === '' ? undefined : decode(url.username, 'user name');
  const password = url.password === '' ? undefined : decode(url.password, 'password');
  // From here on, nothing vfleet prints can show it (redact.ts).
  rememberSecret(password);
  const shownHost = host.includes(':') ? `[${host}]` : host;
  const userInfo =
    password !== undefined
      ? `${url.username}:***@`
      : username !== undefined
        ? `${url.username}@`
        : '';
  return {
    host,
    port,
    username,
    password,
    db,
    tls: url.protocol === 'rediss:',
    redacted: `${url.protocol}//${userInfo}${shownHost}:${port}/${db}`,
  };
}
