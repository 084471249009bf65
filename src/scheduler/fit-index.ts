// Hosts ordered by a non-negative integer key (their effective free capacity), for exact
// best-fit (smallest key ≥ a bound that passes the checks) and worst-fit (largest key) without
// sampling. Keys live in a four-level bitset of 32-bit words, so finding the next occupied key
// takes at most eight word operations; hosts with equal keys share a bucket (a linked list).

const BITS = 24;
/** Keys are clamped below this (16 Mi): in MiB, hosts up to 16 TiB are ordered exactly. */
export const MAX_KEY = (1 << BITS) - 1;

class BitTree {
  private readonly levels: Uint32Array[] = [];

  constructor(bits: number) {
    let size = 1 << bits;
    do {
      const words = Math.max(1, Math.ceil(size / 32));
      this.levels.push(new Uint32Array(words));
      size = words;
    } while (size > 1);
  }

  set(i: number): void {
    for (const level of this.levels) {
      const word = i >>> 5;
      const before = level[word] as number;
      level[word] = before | (1 << (i & 31));
      if (before !== 0) return;
      i = word;
    }
  }

  clear(i: number): void {
    for (const level of this.levels) {
      const word = i >>> 5;
      const after = (level[word] as number) & ~(1 << (i & 31));
      level[word] = after;
      if (after !== 0) return;
      i = word;
    }
  }

  /** The smallest set index ≥ i, or -1. */
  next(i: number): number {
    let depth = 0;
    // Climb until a word holds a set bit at or after the position.
    for (;;) {
      const level = this.levels[depth];
      if (!level) return -1;
      const word = i >>> 5;
      if (word >= level.length) return -1;
      const masked = (level[word] as number) & (~0 << (i & 31));
      if (masked !== 0) {
        i = (word << 5) + ctz(masked);
        break;
      }
      depth++;
      i = word + 1;
    }
    // Descend to the first set bit of each lower level.
    while (depth > 0) {
      depth--;
      const level = this.levels[depth] as Uint32Array;
      i = (i << 5) + ctz(level[i] as number);
    }
    return i;
  }

  /** The largest set index ≤ i, or -1. */
  previous(i: number): number {
    let depth = 0;
    for (;;) {
      const level = this.levels[depth];
      if (!level || i < 0) return -1;
      const word = i >>> 5;
      const shift = 31 - (i & 31);
      const masked =
        shift === 0 ? (level[word] as number) : ((level[word] as number) << shift) >>> shift;
      if (masked !== 0) {
        i = (word << 5) + 31 - Math.clz32(masked);
        break;
      }
      depth++;
      i = word - 1;
    }
    while (depth > 0) {
      depth--;
      const level = this.levels[depth] as Uint32Array;
      i = (i << 5) + 31 - Math.clz32(level[i] as number);
    }
    return i;
  }
}

/**
 * The same set of occupied keys for a few hosts: a sorted array (at most one key per host is
 * occupied). A BitTree of 24 bits is 2 MiB to allocate and zero, once per index per plan — most
 * of a small fleet's scheduling (the controller plans every few seconds; the tests plan
 * thousands of small fleets); a search over a few hundred keys costs nothing.
 */
class SortedKeys {
  private readonly keys: Int32Array;
  private size = 0;

  constructor(capacity: number) {
    this.keys = new Int32Array(Math.max(1, capacity));
  }

  /** The position of the first key ≥ i. */
  private lowerBound(i: number): number {
    let lo = 0;
    let hi = this.size;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.keys[mid] as number) < i) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  set(i: number): void {
    const at = this.lowerBound(i);
    if (at < this.size && this.keys[at] === i) return;
    this.keys.copyWithin(at + 1, at, this.size);
    this.keys[at] = i;
    this.size++;
  }

  clear(i: number): void {
    const at = this.lowerBound(i);
    if (at >= this.size || this.keys[at] !== i) return;
    this.keys.copyWithin(at, at + 1, this.size);
    this.size--;
  }

  next(i: number): number {
    const at = this.lowerBound(i);
    return at < this.size ? (this.keys[at] as number) : -1;
  }

  previous(i: number): number {
    if (i < 0) return -1;
    const at = this.lowerBound(i + 1) - 1;
    return at >= 0 ? (this.keys[at] as number) : -1;
  }
}

/** Up to this many hosts, an index keeps its keys in a SortedKeys rather than a BitTree. */
export const SORTED_KEYS_UP_TO = 256;

function ctz(x: number): number {
  return 31 - Math.clz32(x & -x);
}

/**
 * The first host of each occupied key's bucket: a hash table over typed arrays (open addressing,
 * linear probing, deletion by backward shift). A Map<number, number> here was most of the cost of
 * `set`, which runs for every index a host is in each time an instance is placed or kept there
 * (half a million times in a plan of 100,000 kept instances). At most one key per host is
 * occupied, so a table of twice the hosts never fills.
 */
class Heads {
  private readonly keys: Int32Array;
  private readonly hosts: Int32Array;
  private readonly shift: number;
  private readonly mask: number;

  constructor(hostCount: number) {
    let bits = 4;
    while (1 << bits < 2 * hostCount) bits++;
    this.keys = new Int32Array(1 << bits).fill(-1);
    this.hosts = new Int32Array(1 << bits);
    this.shift = 32 - bits;
    this.mask = (1 << bits) - 1;
  }

  /** Fibonacci hashing: nearby keys (free capacities) land far apart. */
  private home(key: number): number {
    return Math.imul(key, 0x9e3779b1) >>> this.shift;
  }

  private slot(key: number): number {
    let i = this.home(key);
    for (;;) {
      const k = this.keys[i] as number;
      if (k === key || k < 0) return i;
      i = (i + 1) & this.mask;
    }
  }

  /** The first host at `key`, or -1. */
  get(key: number): number {
    const i = this.slot(key);
    return this.keys[i] === key ? (this.hosts[i] as number) : -1;
  }

  set(key: number, host: number): void {
    const i = this.slot(key);
    this.keys[i] = key;
    this.hosts[i] = host;
  }

  delete(key: number): void {
    let i = this.slot(key);
    if (this.keys[i] !== key) return;
    // Later entries of the run move back into the hole unless their home lies after it.
    for (let j = (i + 1) & this.mask; ; j = (j + 1) & this.mask) {
      const k = this.keys[j] as number;
      if (k < 0) break;
      const home = this.home(k);
      const stays = i <= j ? i < home && home <= j : i < home || home <= j;
      if (stays) continue;
      this.keys[i] = k;
      this.hosts[i] = this.hosts[j] as number;
      i = j;
    }
    this.keys[i] = -1;
  }
}

export class FitIndex {
  private readonly tree: BitTree | SortedKeys;
  private readonly maxKey: number;
  private readonly heads: Heads;
  private readonly nextHost: Int32Array;
  private readonly previousHost: Int32Array;
  private readonly keys: Int32Array;

  /** `bits` bounds the keys (default 24: up to MAX_KEY); smaller indexes take less memory. */
  constructor(hostCount: number, bits = BITS) {
    this.tree = hostCount <= SORTED_KEYS_UP_TO ? new SortedKeys(hostCount) : new BitTree(bits);
    this.maxKey = (1 << bits) - 1;
    this.heads = new Heads(hostCount);
    this.nextHost = new Int32Array(hostCount).fill(-1);
    this.previousHost = new Int32Array(hostCount).fill(-1);
    this.keys = new Int32Array(hostCount).fill(-1);
  }

  has(host: number): boolean {
    return (this.keys[host] as number) >= 0;
  }

  /** Puts the host at `key` (clamped to 0…MAX_KEY), first in its bucket. */
  set(host: number, key: number): void {
    const k = key <= 0 ? 0 : key >= this.maxKey ? this.maxKey : Math.floor(key);
    if (this.keys[host] === k) return;
    if (this.has(host)) this.remove(host);
    const head = this.heads.get(k);
    this.nextHost[host] = head;
    this.previousHost[host] = -1;
    if (head < 0) this.tree.set(k);
    else this.previousHost[head] = host;
    this.heads.set(k, host);
    this.keys[host] = k;
  }

  /** Puts the host at `key` (0…MAX_KEY, whole), first in its bucket even when it is there. */
  moveToHead(host: number, key: number): void {
    this.remove(host);
    this.set(host, key);
  }

  remove(host: number): void {
    const k = this.keys[host] as number;
    if (k < 0) return;
    const next = this.nextHost[host] as number;
    const previous = this.previousHost[host] as number;
    if (previous >= 0) this.nextHost[previous] = next;
    else if (next >= 0) this.heads.set(k, next);
    else {
      this.heads.delete(k);
      this.tree.clear(k);
    }
    if (next >= 0) this.previousHost[next] = previous;
    this.keys[host] = -1;
    this.nextHost[host] = -1;
    this.previousHost[host] = -1;
  }

  /**
   * The first host, in ascending key order from `from` and below `below`, that `accept` takes;
   * -1 if none.
   */
  ascending(from: number, accept: (host: number) => boolean, below = MAX_KEY + 1): number {
    let k = this.tree.next(from <= 0 ? 0 : Math.min(Math.ceil(from), this.maxKey));
    while (k >= 0 && k < below) {
      for (let h = this.heads.get(k); h >= 0; h = this.nextHost[h] as number) {
        if (accept(h)) return h;
      }
      k = k >= this.maxKey ? -1 : this.tree.next(k + 1);
    }
    return -1;
  }

  /** The first host, in descending key order down to `downTo`, that `accept` takes; -1 if none. */
  descending(downTo: number, accept: (host: number) => boolean): number {
    let k = this.tree.previous(this.maxKey);
    while (k >= 0 && k >= downTo) {
      for (let h = this.heads.get(k); h >= 0; h = this.nextHost[h] as number) {
        if (accept(h)) return h;
      }
      k = this.tree.previous(k - 1);
    }
    return -1;
  }
}
