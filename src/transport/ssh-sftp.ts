// Files over ssh (README.md, "SFTP and drops", "Whole files"): one SFTP session per connection,
// opened on first use. ssh2 takes requests on an SFTP session whose connection dropped and never
// answers them, and makes some itself on the way out, so every call, and every file stream until
// it closes, fails with its session (`connection-lost`, retryable) instead of waiting: the streams
// returned are our own, not ssh2's. A call that finds its connection dead is tried once more on a
// new one (every operation here is idempotent). File errors are fs-style (ENOENT, EACCES), as the
// local transport's.
import { finished, PassThrough, type Readable, Writable } from 'node:stream';
import type { SFTPWrapper } from 'ssh2';
import { VfleetError } from '../model/errors.js';
import { type Connection, neverSent, type SshConnection } from './ssh-connection.js';
import { temporaryPathFor } from './temporary-name.js';

/** fs-style errors for SFTP statuses a caller acts on (ENOENT, EACCES), like the local transport. */
function fileError(host: string, operation: string, path: string, e: unknown): Error {
  const status = (e as { code?: unknown }).code;
  const errno = status === 2 ? 'ENOENT' : status === 3 ? 'EACCES' : undefined;
  const message = `${host}: ${operation} ${path}: ${e instanceof Error ? e.message : String(e)}`;
  if (errno) return Object.assign(new Error(message), { code: errno, path });
  return new VfleetError('sftp-failed', message, { cause: e });
}

/**
 * Who waits on each SFTP session, called when it ends: ssh2 takes requests on an ended session
 * and never answers them. One listener per session, not one per waiter.
 */
const sessionWaiters = new WeakMap<SFTPWrapper, Set<() => void> | 'ended'>();

/** Watches a new session's end; returns the way to end it for its waiters by hand. */
function watchSession(sftp: SFTPWrapper): () => void {
  sessionWaiters.set(sftp, new Set());
  const gone = () => {
    const waiting = sessionWaiters.get(sftp);
    sessionWaiters.set(sftp, 'ended');
    if (waiting instanceof Set) for (const waiter of waiting) waiter();
  };
  sftp.once('end', gone);
  sftp.once('close', gone);
  return gone;
}

/** Calls `ended` when the session ends (at once if it has); returns the way to stop waiting. */
function onSessionEnd(sftp: SFTPWrapper, ended: () => void): () => void {
  const waiting = sessionWaiters.get(sftp);
  if (waiting === 'ended') {
    ended();
    return () => undefined;
  }
  waiting?.add(ended);
  return () => waiting?.delete(ended);
}

/**
 * ssh2 never answers an SFTP request made after its session ended (a dropped connection), and
 * some operations make one on their way out (a write that failed closes its handle and waits
 * for the reply; our writeFile unlinks its temporary file): the work fails with the session
 * instead of waiting forever.
 */
function whileSessionLives<T>(
  sftp: SFTPWrapper,
  work: (sftp: SFTPWrapper) => Promise<T>,
  lost: () => VfleetError,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const stopWaiting = onSessionEnd(sftp, () => reject(lost()));
    Promise.resolve()
      .then(() => work(sftp))
      .then(resolve, reject)
      .finally(stopWaiting);
  });
}

export class SshSftp {
  readonly #connection: SshConnection;

  constructor(connection: SshConnection) {
    this.#connection = connection;
  }

  async #sftp(): Promise<{ conn: Connection; sftp: SFTPWrapper }> {
    const conn = await this.#connection.get();
    const opening: Promise<SFTPWrapper> =
      conn.sftp ??
      (async () => {
        try {
          const sftp = await new Promise<SFTPWrapper>((resolve, reject) =>
            conn.client.sftp((e, s) => (e ? reject(e) : resolve(s))),
          );
          conn.endSftp = watchSession(sftp);
          onSessionEnd(sftp, () => {
            if (conn.sftp === opening) conn.sftp = undefined;
          });
          // ssh2 can hand over a session after its connection closed (the reply was read
          // first): one that is dead from birth never reports its end.
          if (conn.dead) throw this.#connection.lost('opening SFTP');
          return sftp;
        } catch (e) {
          conn.sftp = undefined;
          if (conn.dead || neverSent(e)) {
            this.#connection.discard(conn);
            throw this.#connection.lost('opening SFTP');
          }
          const host = this.#connection.host;
          throw new VfleetError('sftp-failed', `${host}: cannot start SFTP: ${e}`, { cause: e });
        }
      })();
    conn.sftp = opening;
    return { conn, sftp: await opening };
  }

  /** One SFTP operation; a connection found dead on the way is replaced once (all are idempotent). */
  async #withSftp<T>(
    operation: string,
    path: string,
    work: (sftp: SFTPWrapper) => Promise<T>,
  ): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const { conn, sftp } = await this.#sftp();
      try {
        return await whileSessionLives(sftp, work, () =>
          this.#connection.lost(`${operation} ${path}`),
        );
      } catch (e) {
        if (e instanceof VfleetError && e.code === 'connection-lost' && attempt === 1) continue;
        if (conn.dead || neverSent(e)) {
          this.#connection.discard(conn);
          if (attempt === 1) continue;
          throw this.#connection.lost(`${operation} ${path}`);
        }
        throw fileError(this.#connection.host, operation, path, e);
      }
    }
  }

  readFile(path: string): Promise<Buffer> {
    return this.#withSftp(
      'readFile',
      path,
      (sftp) =>
        new Promise<Buffer>((resolve, reject) =>
          sftp.readFile(path, (e, data) => (e ? reject(e) : resolve(data))),
        ),
    );
  }

  writeFile(path: string, data: string | Buffer, mode = 0o600): Promise<void> {
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    return this.#withSftp('writeFile', path, async (sftp) => {
      const temporary = temporaryPathFor(path);
      const call = (f: (done: (e?: Error | null) => void) => void) =>
        new Promise<void>((resolve, reject) => f((e) => (e ? reject(e) : resolve())));
      try {
        await call((done) => sftp.writeFile(temporary, bytes, { mode }, done));
        // The server's umask narrowed the mode given at open: set it exactly.
        await call((done) => sftp.chmod(temporary, mode, done));
        await rename(sftp, temporary, path);
      } catch (e) {
        await call((done) => sftp.unlink(temporary, done)).catch(() => undefined);
        throw e;
      }
    });
  }

  createReadStream(path: string): Promise<Readable> {
    return this.#withSftp('createReadStream', path, (sftp) => {
      const inner = sftp.createReadStream(path);
      const outer = new PassThrough();
      inner.pipe(outer);
      return this.#sessionStream(sftp, inner, outer, `reading ${path}`);
    });
  }

  createWriteStream(path: string, mode = 0o600): Promise<Writable> {
    return this.#withSftp('createWriteStream', path, (sftp) => {
      const inner = sftp.createWriteStream(path, { mode });
      const lost = (e: Error | null | undefined) =>
        e && neverSent(e) ? this.#connection.lost(`writing ${path}`) : e;
      const outer = new Writable({
        write: (chunk, encoding, done) => inner.write(chunk, encoding, (e) => done(lost(e))),
        // ssh2's stream ends by closing its handle: done once it did (or failed).
        final: (done) => {
          finished(inner, (e) => done(lost(e)));
          inner.end();
        },
      });
      return this.#sessionStream(sftp, inner, outer, `writing ${path}`);
    });
  }

  /**
   * The stream a caller gets for an SFTP file stream: ours, ended with the SFTP session. ssh2
   * never answers a request made after its session ended (a dropped connection), and its stream
   * that fails then waits for its handle's close, which is such a request: an upload or a
   * download that was running when the connection dropped would never end, and the copy (an
   * image staging, a move) with it.
   */
  #sessionStream<T extends Readable | Writable>(
    sftp: SFTPWrapper,
    inner: Readable | Writable,
    outer: T,
    what: string,
  ): Promise<T> {
    const lost = () => this.#connection.lost(what);
    const stopWaiting = onSessionEnd(sftp, () => outer.destroy(lost()));
    inner.once('error', (e) => outer.destroy(neverSent(e) ? lost() : e));
    outer.once('close', () => {
      stopWaiting();
      inner.destroy();
    });
    return new Promise<T>((resolve, reject) => {
      inner.once('open', () => resolve(outer));
      outer.once('error', reject); // kept: an error before the caller listens is no crash
    });
  }
}

/** Replaces `to` atomically: OpenSSH's posix-rename, else remove and rename (not atomic). */
function rename(sftp: SFTPWrapper, from: string, to: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (e?: Error | null) => (e ? reject(e) : resolve());
    try {
      sftp.ext_openssh_rename(from, to, done);
    } catch {
      // The server lacks the extension (ssh2 throws synchronously).
      sftp.unlink(to, () => sftp.rename(from, to, done));
    }
  });
}
