// HTTP basic auth for the server: the credentials come from the environment —
// VFLEET_HTTP_USER with VFLEET_HTTP_PASSWORD, or VFLEET_HTTP_PASSWORD_FILE (a file holding the
// password, so it stays out of the process's environment and `ps e`). They are required when the
// server listens beyond loopback (listen-address.ts) — vfleet refuses to start otherwise — and
// enforced wherever they are given. The password is remembered for redaction (state/redact.ts)
// the moment it is read, so no message, log or error ever shows it.
import { createHash, timingSafeEqual } from 'node:crypto';
import { VfleetError } from '../model/errors.js';
import { rememberSecret } from '../state/redact.js';
import { readBoundedFileSync } from '../transport/bounded-file.js';
import { formatAddress, isLoopback, type ListenAddress } from './listen-address.js';

export interface Credentials {
  readonly user: string;
  /** sha256 of the password: compared in constant time, never kept as text. */
  readonly passwordDigest: Buffer;
  readonly userDigest: Buffer;
}

const digest = (text: string) => createHash('sha256').update(text, 'utf8').digest();

/** A password file is a line, not a document. */
const MAX_PASSWORD_FILE_BYTES = 4096;

function passwordFrom(env: NodeJS.ProcessEnv): string | undefined {
  const file = env.VFLEET_HTTP_PASSWORD_FILE;
  if (file !== undefined && file !== '') {
    const read = readBoundedFileSync(file, MAX_PASSWORD_FILE_BYTES);
    // The reason names the file and why (missing, too large, not a regular file), never content.
    if (!read.ok)
      throw new VfleetError('http-credentials', `VFLEET_HTTP_PASSWORD_FILE ${file} ${read.reason}`);
    const password = read.bytes.toString('utf8').replace(/\r?\n$/, '');
    rememberSecret(password);
    return password === '' ? undefined : password;
  }
  const password = env.VFLEET_HTTP_PASSWORD;
  rememberSecret(password);
  return password === '' ? undefined : password;
}

/**
 * The credentials the server enforces (null: none, loopback only), or a one-line refusal: a
 * server reachable from other machines without credentials, or half a pair.
 */
export function credentialsFor(listen: ListenAddress, env: NodeJS.ProcessEnv): Credentials | null {
  const user = env.VFLEET_HTTP_USER ?? '';
  const password = passwordFrom(env);
  if (user === '' && password === undefined) {
    if (isLoopback(listen.host)) return null;
    throw new VfleetError(
      'http-auth-required',
      `--http ${formatAddress(listen.host, listen.port)} is reachable beyond this machine: set VFLEET_HTTP_USER and VFLEET_HTTP_PASSWORD (or VFLEET_HTTP_PASSWORD_FILE) for basic auth, or listen on 127.0.0.1`,
    );
  }
  if (user === '' || password === undefined)
    throw new VfleetError(
      'http-credentials',
      'basic auth needs both VFLEET_HTTP_USER and a password (VFLEET_HTTP_PASSWORD or VFLEET_HTTP_PASSWORD_FILE)',
    );
  if (user.includes(':'))
    throw new VfleetError('http-credentials', 'VFLEET_HTTP_USER may not contain ":"');
  return { user, userDigest: digest(user), passwordDigest: digest(password) };
}

/** Whether an `Authorization` header carries these credentials. */
export function authorized(header: string | undefined, credentials: Credentials): boolean {
  const match = /^Basic\s+([A-Za-z0-9+/=]{1,1024})\s*$/i.exec(header ?? '');
  if (!match) return false;
  const decoded = Buffer.from(match[1] as string, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return false;
  // Both compared, always: how long the answer takes says nothing about which one was wrong.
  const userOk = timingSafeEqual(digest(decoded.slice(0, colon)), credentials.userDigest);
  const passwordOk = timingSafeEqual(digest(decoded.slice(colon + 1)), credentials.passwordDigest);
  return userOk && passwordOk;
}
