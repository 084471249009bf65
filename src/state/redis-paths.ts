// Where the private redis-server of a folder keeps its files (redis-server.ts starts and stops
// it): a module of its own, so that what only needs the socket's path — plan's early state read
// (app/state-read-start.ts) — loads nothing of the server's management or of ioredis.
import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VfleetError } from '../model/errors.js';

export interface EmbeddedRedisPaths {
  readonly dir: string;
  readonly socket: string;
  readonly pidfile: string;
  readonly logfile: string;
  readonly lockfile: string;
  /** True when `<dir>/redis.sock` was too long for a unix socket and `socket` is in the tmpdir. */
  readonly socketInTmp: boolean;
}

/**
 * sun_path is 108 bytes on Linux (107 usable) and 104 on macOS and the BSDs (103 usable); the
 * smaller bound keeps a folder's socket where it is on every platform vfleet runs on.
 */
const MAX_SOCKET_PATH = 103;

/** Where the private server of `cwd` keeps its files. */
export function embeddedRedisPaths(cwd: string): EmbeddedRedisPaths {
  const base = realpathSync(cwd);
  const dir = join(base, '.vfleet', 'redis');
  const preferred = join(dir, 'redis.sock');
  const files = {
    dir,
    pidfile: join(dir, 'redis.pid'),
    logfile: join(dir, 'redis.log'),
    lockfile: join(dir, 'start.lock'),
  };
  if (Buffer.byteLength(preferred) <= MAX_SOCKET_PATH) {
    return { ...files, socket: preferred, socketInTmp: false };
  }
  // Named by the folder, so every vfleet process in that folder finds the same socket.
  const hash = createHash('sha256').update(base).digest('hex').slice(0, 16);
  const socket = join(privateTmpDir(), `${hash}.sock`);
  if (Buffer.byteLength(socket) > MAX_SOCKET_PATH) {
    throw new VfleetError(
      'redis-socket-path',
      `both ${preferred} and ${socket} are too long for a unix socket; set TMPDIR to a short folder or set REDIS_URL`,
    );
  }
  return { ...files, socket, socketInTmp: true };
}

/**
 * `<tmpdir>/vfleet-<uid>`, 0700 and ours: a socket in a shared tmpdir could otherwise be
 * pre-created (or answered) by another user.
 */
function privateTmpDir(): string {
  const uid = process.getuid?.() ?? 0;
  const dir = join(tmpdir(), `vfleet-${uid}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const stat = lstatSync(dir);
  if (!stat.isDirectory() || stat.uid !== uid || (stat.mode & 0o077) !== 0) {
    throw new VfleetError(
      'redis-socket-path',
      `${dir} must be a folder owned by you and private (mode 0700) to hold the Redis socket; remove it or set TMPDIR`,
    );
  }
  return dir;
}
