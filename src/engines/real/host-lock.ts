// One lock per instance on the host, so two workers (in one process, or on two machines) never
// act on the same instance at once: two identical creates make one instance, and the fence
// check and the change it guards are one critical section.
//
// The lock is a folder, `<dataDir>/locks/<name>/`: `mkdir` is atomic on every filesystem and
// needs nothing but `exec`, so it works over ssh exactly as here (a `flock` would have to be
// held by a process that lives as long as the critical section, which an exec request cannot
// promise). The holder writes its token into `owner` and touches the folder while it works; a
// lock whose folder has not been touched for `leaseMs` belongs to a holder that died, and is
// broken: renamed away (atomic, so only one breaker wins), checked to be the one judged
// stale, then removed.
import { hostname } from 'node:os';
import { VfleetError } from '../../model/errors.js';
import type { Transport } from '../../transport/transport.js';
import { delay, readText } from './host-commands.js';

export interface HostLockOptions {
  /** A lock untouched for this long is stale (its holder died). Default 60 s. */
  readonly leaseMs?: number;
  /** How long to wait for a lock before giving up, retryably. Default 120 s. */
  readonly acquireTimeoutMs?: number;
}

export class HostLocks {
  private readonly leaseMs: number;
  private readonly acquireTimeoutMs: number;
  /** Callers in this process queue here first, so they do not poll the host against each other. */
  private readonly local = new Map<string, Promise<void>>();
  private counter = 0;

  constructor(
    private readonly t: Transport,
    private readonly pathOf: (name: string) => string,
    options: HostLockOptions = {},
  ) {
    this.leaseMs = options.leaseMs ?? 60_000;
    this.acquireTimeoutMs = options.acquireTimeoutMs ?? 120_000;
  }

  async hold<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.local.get(name) ?? Promise.resolve();
    let done = () => {};
    const mine = previous.then(() => new Promise<void>((resolve) => (done = resolve)));
    this.local.set(name, mine);
    await previous;
    try {
      const path = this.pathOf(name);
      const token = await this.acquire(name, path);
      // Refreshing keeps a long critical section (a disk copy) from being taken for a dead one.
      // Not past a lost connection: the host went away under the critical section (a host killed
      // mid-sync), which cannot count on what it did there, and a holder stuck on it would keep
      // the lock fresh on the host come back, for ever (its stale copies never destroyed: seen
      // in controller-ssh-cli). The lock then goes stale a lease after the last touch.
      const refresh = setInterval(
        () => void this.t.exec(['touch', '-c', '--', path]).catch(() => clearInterval(refresh)),
        Math.max(50, this.leaseMs / 4),
      );
      try {
        return await fn();
      } finally {
        clearInterval(refresh);
        await this.release(path, token);
      }
    } finally {
      done();
      if (this.local.get(name) === mine) this.local.delete(name);
    }
  }

  private async acquire(name: string, path: string): Promise<string> {
    const token = `${hostname()}.${process.pid}.${Date.now().toString(36)}.${this.counter++}`;
    const deadline = Date.now() + this.acquireTimeoutMs;
    let wait = 20;
    for (;;) {
      const made = await this.t.exec(['mkdir', '--', path]);
      if (made.code === 0) {
        await this.t.writeFile(`${path}/owner`, `${token}\n`, 0o600);
        return token;
      }
      const why = made.stderr.toString('utf8');
      if (!/exists/i.test(why)) {
        throw new VfleetError(
          'command-failed',
          `${this.t.host}: cannot make the lock ${path}: ${why.trim()}`,
        );
      }
      await this.breakIfStale(path);
      if (Date.now() >= deadline) {
        throw new VfleetError(
          'host-busy',
          `${this.t.host}: ${name} stayed locked for ${this.acquireTimeoutMs} ms (${path})`,
          { retryable: true },
        );
      }
      await delay(wait);
      wait = Math.min(wait * 2, 250);
    }
  }

  private async breakIfStale(path: string): Promise<void> {
    const [touched, now] = await Promise.all([
      this.t.exec(['stat', '-c', '%Y', '--', path]),
      this.t.exec(['date', '+%s']),
    ]);
    if (touched.code !== 0 || now.code !== 0) return; // released meanwhile
    const ageMs = (Number(now.stdout.toString()) - Number(touched.stdout.toString())) * 1000;
    if (!(ageMs > this.leaseMs)) return;
    const judged = await readText(this.t, `${path}/owner`);
    const aside = `${path}.stale.${process.pid}.${this.counter++}`;
    if ((await this.t.exec(['mv', '-T', '--', path, aside])).code !== 0) return; // another breaker won
    const owner = await readText(this.t, `${aside}/owner`);
    if (owner === judged) {
      await this.t.exec(['rm', '-rf', '--', aside]);
    } else {
      // Taken meanwhile by a live holder (between our look and the rename): give it back.
      await this.t.exec(['mv', '-T', '--', aside, path]);
    }
  }

  private async release(path: string, token: string): Promise<void> {
    const owner = await readText(this.t, `${path}/owner`);
    // Not ours any more only if our lease ran out and someone broke it: leave theirs alone.
    if (owner?.trim() === token) await this.t.exec(['rm', '-rf', '--', path]);
  }
}
