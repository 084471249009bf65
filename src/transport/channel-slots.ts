// A counting semaphore with a FIFO queue: how many SSH channels one connection may have open at
// once. sshd refuses a session channel beyond its MaxSessions (10 by default), so commands past
// the bound wait here, in order, instead of failing. A waiter can give up (abort, timeout).

export class ChannelSlots {
  #free: number;
  readonly #waiting: Array<() => void> = [];

  constructor(readonly size: number) {
    if (!Number.isInteger(size) || size < 1) throw new Error(`channel slots: bad size ${size}`);
    this.#free = size;
  }

  /** Resolves with a release function once a slot is free; `cancel` rejects a wait with a reason. */
  acquire(cancel?: Promise<never>): Promise<() => void> {
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      const next = this.#waiting.shift();
      if (next) next();
      else this.#free++;
    };
    if (this.#free > 0) {
      this.#free--;
      return Promise.resolve(release);
    }
    return new Promise((resolve, reject) => {
      const grant = () => resolve(release);
      this.#waiting.push(grant);
      cancel?.catch((reason) => {
        const at = this.#waiting.indexOf(grant);
        if (at === -1) return; // already granted: the caller releases it
        this.#waiting.splice(at, 1);
        reject(reason);
      });
    });
  }

  get waiting(): number {
    return this.#waiting.length;
  }
}
