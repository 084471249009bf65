// How an instance record is stored in the state's `instances` hash (keys.ts) and read back.
//
// `vfleet plan` on 100,000 instances reads every record (one HVALS) and, on a converged fleet,
// most of its time beyond the spec went to moving, decoding and parsing them: Redis took longer
// to send HVALS of ~240-byte records (a few hundred ms) than vfleet took to act on them. So a
// record is stored compactly: a JSON array of the fields that differ between the instances of a
// group — `[instance, host, generation, status, failoverHost, profile, homeHost?]` — and the
// fields the instances of a group share (group, image, resources, the package list's id) as a
// *profile* stored once (`profiles`, content-addressed like the package lists). About 60 bytes
// instead of 240: HVALS of 100,000 takes a third of the time, a small array parses faster than
// the object, and records sharing a profile share its strings and its (frozen) resources and
// package list objects, which leaves the garbage collector less to copy.
//
// The emulated agent's Lua (engines/embedded/emulated-agent.ts) reads a record's host and
// generation itself: the compact form keeps them second and third, whatever else changes.
//
// What is read back is the record as written, key for key and in the same key order. A record
// that does not have exactly the fields above, in that order, is stored whole as before (a JSON
// object, its package list by id). Records written by an older vfleet — the object form, the
// package list inline or by id — are still read, and become the compact form when next written;
// an older vfleet cannot read the compact form.
import { isAscii } from 'node:buffer';
import { createHash } from 'node:crypto';
import { VfleetError } from '../model/errors.js';
import type { RecordedInstance } from '../model/instances.js';
import type { FleetKeys } from './keys.js';

/** An instance's record (model/instances.ts): the state's word for it. */
export type ObservedInstanceRecord = RecordedInstance;

/** A write beside the record: a package list or a profile it names, under its id. */
export type RecordEntry = readonly [hash: 'packages' | 'profiles', id: string, json: string];

/** An instance record as stored, and the entries it names (each written beside it). */
export interface StoredInstanceRecord {
  readonly json: string;
  readonly entries: readonly RecordEntry[];
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/**
 * The id a package list is stored under in `packages` (keys.ts): its JSON text's sha256, the
 * first 128 bits in hex. Content-addressed, so every record with the same list names the same
 * entry, and writing a list that is already there changes nothing.
 */
export function packageListId(listJson: string): string {
  return sha256(listJson).slice(0, 32);
}

/**
 * The id of a profile in `profiles`: the first 60 bits of its JSON's sha256, as 10 characters of
 * base64url. Shorter than a list's id because every record carries it; 10 characters because
 * V8 makes a JSON string of at most 10 one string for all its copies (internalized: allocated
 * once, its hash computed once). A fleet holds a profile per group, image, resources and package
 * list in use (thousands, tens of thousands over years): far too few for two to share 60 bits by
 * chance.
 */
export function profileId(profileJson: string): string {
  return createHash('sha256').update(profileJson).digest('base64url').slice(0, 10);
}

/** A record's keys before its optional ones, in the order its object has (and gets back) them. */
const LEADING = [
  'instance',
  'group',
  'host',
  'generation',
  'status',
  'image',
  'resources',
  'failoverHost',
] as const;

const isPlainObject = (v: unknown): v is object =>
  v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * Whether the compact form gives back exactly this record: the leading fields in order, then
 * `homeHost` and `packages` where present, nothing else, each of the type a record has (a value
 * JSON would change, like undefined or NaN, keeps the record in the object form).
 */
function compactable(record: ObservedInstanceRecord): boolean {
  const keys = Object.keys(record);
  for (let i = 0; i < LEADING.length; i++) if (keys[i] !== LEADING[i]) return false;
  let n = LEADING.length;
  if (keys[n] === 'homeHost') {
    if (typeof record.homeHost !== 'string') return false;
    n++;
  }
  if (keys[n] === 'packages') {
    if (!isPlainObject(record.packages)) return false;
    n++;
  }
  return (
    n === keys.length &&
    typeof record.instance === 'string' &&
    typeof record.group === 'string' &&
    typeof record.host === 'string' &&
    Number.isFinite(record.generation) &&
    typeof record.status === 'string' &&
    typeof record.image === 'string' &&
    isPlainObject(record.resources) &&
    (record.failoverHost === null || typeof record.failoverHost === 'string')
  );
}

/** An instance record as the state stores it, with the package list and profile it names. */
export function storedInstanceRecord(record: ObservedInstanceRecord): StoredInstanceRecord {
  const entries: RecordEntry[] = [];
  let listId: string | undefined;
  if (record.packages !== undefined) {
    const json = JSON.stringify(record.packages);
    listId = packageListId(json);
    entries.push(['packages', listId, json]);
  }
  if (!compactable(record)) {
    return {
      json: JSON.stringify(listId === undefined ? record : { ...record, packages: listId }),
      entries,
    };
  }
  const { instance, group, host, generation, status, image, resources, failoverHost } = record;
  const profile = JSON.stringify(
    listId === undefined
      ? { group, image, resources }
      : { group, image, resources, packages: listId },
  );
  const id = profileId(profile);
  entries.push(['profiles', id, profile]);
  const homeHost = record.homeHost;
  const fields = [instance, host, generation, status, failoverHost, id];
  if (homeHost !== undefined) fields.push(homeHost);
  return { json: JSON.stringify(fields), entries };
}

type Packages = Readonly<Record<string, string>>;

interface Profile {
  readonly group: string;
  readonly image: string;
  readonly resources: ObservedInstanceRecord['resources'];
  readonly packages: Packages | undefined;
}

const PACKAGES_KEY = ',"packages":';

/**
 * Reads the records of one state read: each package list and profile parsed once and its
 * objects shared (frozen) by every record that names it.
 */
export class InstanceRecordReader {
  private readonly named = new Map<string, Packages>();
  private readonly inline = new Map<string, Packages>();
  private readonly profiled = new Map<string, Profile>();

  constructor(
    private readonly keys: FleetKeys,
    private readonly lists: Readonly<Record<string, string>>,
    private readonly profiles: Readonly<Record<string, string>>,
  ) {}

  /**
   * One record's text as the record; undefined when it is not JSON (the caller names the
   * field). A record naming a list or a profile the state lacks is `state-corrupt`.
   */
  read(json: string): ObservedInstanceRecord | undefined {
    if (json.charCodeAt(0) === 91 /* [ */) {
      let fields: unknown;
      try {
        fields = JSON.parse(json);
      } catch {
        return undefined;
      }
      return this.fromFields(fields as unknown[]);
    }
    const record = parseObjectRecord(json, this.inline);
    if (record === undefined) return undefined;
    const id = record.packages;
    if (typeof id === 'string') record.packages = this.list(id, record.instance);
    return record as ObservedInstanceRecord;
  }

  /**
   * Every record of a state read, in `order` (indexes into it) when given; or the first record
   * that is not JSON, for the caller to name. (A loop of its own, so that V8 optimizes it as a
   * whole: in a longer function it ran half its course before compiled code took over.)
   */
  readAll(
    records: RawRecords,
    order: Int32Array | undefined,
  ): ObservedInstanceRecord[] | { readonly json: string } {
    const { data, starts, ends } = records;
    const read: ObservedInstanceRecord[] = new Array(starts.length);
    // ASCII records (the usual) are decoded once, each a slice (bytes are characters). Only their
    // span: `data` may be a whole reply's buffer, and longer.
    const from = starts.length > 0 ? (starts[0] as number) : 0;
    let to = from;
    for (const end of ends) if (end > to) to = end;
    const span = data.subarray(from, to);
    const text = isAscii(span) ? span.toString('latin1') : undefined;
    for (let k = 0; k < starts.length; k++) {
      const i = order === undefined ? k : (order[k] as number);
      const end = ends[i] as number;
      const json =
        end < 0
          ? ''
          : (text?.slice((starts[i] as number) - from, end - from) ??
            data.toString('utf8', starts[i], end));
      const record = this.read(json);
      if (record === undefined) return { json };
      read[k] = record;
    }
    return read;
  }

  private fromFields(fields: unknown[]): ObservedInstanceRecord {
    const [instance, host, generation, status, failoverHost, id, homeHost] = fields as [
      string,
      string,
      number,
      ObservedInstanceRecord['status'],
      string | null,
      string,
      string | undefined,
    ];
    if (fields.length < 6 || fields.length > 7 || typeof id !== 'string') {
      throw new VfleetError(
        'state-corrupt',
        `${this.keys.instances} field ${String(instance)} is not a record this vfleet wrote`,
      );
    }
    const { group, image, resources, packages } = this.profile(id, instance);
    // Built with the record's own key order, so that it reads back as it was written.
    if (homeHost === undefined) {
      return packages === undefined
        ? ({ instance, group, host, generation, status, image, resources, failoverHost } as never)
        : { instance, group, host, generation, status, image, resources, failoverHost, packages };
    }
    return packages === undefined
      ? ({
          instance,
          group,
          host,
          generation,
          status,
          image,
          resources,
          failoverHost,
          homeHost,
        } as never)
      : {
          instance,
          group,
          host,
          generation,
          status,
          image,
          resources,
          failoverHost,
          homeHost,
          packages,
        };
  }

  private profile(id: string, instance: string): Profile {
    let p = this.profiled.get(id);
    if (p !== undefined) return p;
    const text = this.profiles[id];
    if (text === undefined) {
      throw new VfleetError(
        'state-corrupt',
        `${this.keys.instances} field ${instance} names the profile ${id}, which ${this.keys.profiles} does not hold`,
      );
    }
    const parsed = parseJson(text, `${this.keys.profiles} field ${id}`) as {
      group: string;
      image: string;
      resources: ObservedInstanceRecord['resources'];
      packages?: string;
    };
    p = {
      group: parsed.group,
      image: parsed.image,
      resources: Object.freeze(parsed.resources),
      packages: parsed.packages === undefined ? undefined : this.list(parsed.packages, instance),
    };
    this.profiled.set(id, p);
    return p;
  }

  private list(id: string, instance: string): Packages {
    let list = this.named.get(id);
    if (list !== undefined) return list;
    const text = this.lists[id];
    if (text === undefined) {
      throw new VfleetError(
        'state-corrupt',
        `${this.keys.instances} field ${instance} names the package list ${id}, which ${this.keys.packages} does not hold`,
      );
    }
    list = Object.freeze(parseJson(text, `${this.keys.packages} field ${id}`) as Packages);
    this.named.set(id, list);
    return list;
  }
}

export function parseJson(text: string, where: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new VfleetError(
      'state-corrupt',
      `${where} in Redis is not valid JSON; it was not written by this vfleet version`,
    );
  }
}

type ParsedRecord = Omit<ObservedInstanceRecord, 'packages'> & {
  packages?: ObservedInstanceRecord['packages'] | string;
};

/**
 * One record in the object form. It names its package list by id (resolved by the caller), or,
 * written by an older vfleet, holds the list inline, written by JSON.stringify with `packages`
 * last; each inline list's text is parsed once and its object shared (frozen) by every record
 * that has it. Exact: the text after the last `,"packages":` up to the record's closing brace is
 * the value of the record's last key whenever it parses on its own as a JSON object (a JSON value
 * ends where its closing brace is, and the brace after it closes the record); anything else
 * (another writer, another key order) is parsed whole.
 */
function parseObjectRecord(json: string, inline: Map<string, Packages>): ParsedRecord | undefined {
  try {
    const at = json.lastIndexOf(PACKAGES_KEY);
    if (
      at > 0 &&
      json.charCodeAt(at + PACKAGES_KEY.length) === 123 /* { */ &&
      json.charCodeAt(json.length - 1) === 125 /* } */
    ) {
      const text = json.slice(at + PACKAGES_KEY.length, -1);
      let packages = inline.get(text);
      if (packages === undefined) {
        try {
          const parsed: unknown = JSON.parse(text);
          if (isPlainObject(parsed)) {
            packages = Object.freeze(parsed as Record<string, string>);
            inline.set(text, packages);
          }
        } catch {
          // not the record's last key: parsed whole below
        }
      }
      if (packages !== undefined) {
        const head = JSON.parse(`${json.slice(0, at)}}`) as ParsedRecord;
        head.packages = packages;
        return head;
      }
    }
    return JSON.parse(json) as ParsedRecord;
  } catch {
    return undefined;
  }
}

const OBJECT_FIRST = Buffer.from('{"instance":"');

/** The raw records of a state read: where each lies in `data` (bulk strings of one reply). */
export interface RawRecords {
  readonly data: Buffer;
  readonly starts: Int32Array;
  readonly ends: Int32Array;
}

/** Where the instance's name begins in a raw record of either form (-1: neither form's start). */
function nameStart(data: Buffer, start: number, end: number): number {
  if (data[start] === 91 /* [ */) return data[start + 1] === 34 /* " */ ? start + 2 : -1;
  const n = OBJECT_FIRST.length;
  if (end - start <= n) return -1;
  for (let i = 0; i < n; i++) if (data[start + i] !== OBJECT_FIRST[i]) return -1;
  return start + n;
}

/**
 * The raw records in the order of the instance names they begin with (their indexes);
 * undefined when a record does not begin with its name (both forms write it first) or the name
 * is not plain ASCII without escapes (then the caller sorts the parsed records). Parsed in this
 * order, the records lie in memory in the order every later pass visits them (by name): on
 * 100,000 records each pass over them takes about half the time it takes over records parsed
 * in the hash's order and then sorted.
 *
 * A radix sort on the names' bytes, as they are in the reply: comparing 100,000 names as
 * strings took ~100 ms (1.7 million calls of a comparator), this ~20 in a fresh process. For
 * ASCII, the order of the bytes is the order of JavaScript's `<` on the names (UTF-16 code
 * units); a name ends at the first `"` and holds no control character (JSON escapes them), so
 * padding it with zeros sorts it before every longer name it begins. Each loop is a function of
 * its own: in one function, V8 compiled each loop on the fly and threw the code away at the next
 * loop it had not yet seen run, and the sort took ten times as long.
 */
export function sortedByLeadingName(records: RawRecords): Int32Array | undefined {
  const n = records.starts.length;
  const starts = new Int32Array(n);
  const lengths = new Int32Array(n);
  const longest = measureNames(records, starts, lengths);
  if (longest < 0) return undefined;
  // Each name's bytes in one row of a table (0 past its end), so that every pass reads a row of
  // its own rather than wherever the record lies in the reply.
  const table = new Uint8Array(n * longest);
  copyNames(records.data, starts, lengths, table, longest);
  // Least significant byte first, each pass a stable counting sort of the order so far.
  let order = new Int32Array(n);
  for (let r = 0; r < n; r++) order[r] = r;
  let next = new Int32Array(n);
  const counts = new Int32Array(129);
  for (let at = longest - 1; at >= 0; at--) {
    if (!countingPass(table, longest, at, order, next, counts)) continue;
    const done = next;
    next = order;
    order = done;
  }
  return order;
}

/**
 * Where each record's name starts and how long it is; the longest length, or -1 when a record
 * does not begin with a plain ASCII name.
 */
function measureNames(records: RawRecords, starts: Int32Array, lengths: Int32Array): number {
  const { data } = records;
  let longest = 0;
  for (let r = 0; r < starts.length; r++) {
    const end = records.ends[r] as number;
    const start = nameStart(data, records.starts[r] as number, end);
    if (start < 0) return -1;
    let last = start;
    for (; last < end; last++) {
      const c = data[last] as number;
      if (c === 34 /* " */) break;
      if (c >= 0x80 || c < 0x20 || c === 92 /* \\ */) return -1;
    }
    if (last === end) return -1;
    starts[r] = start;
    lengths[r] = last - start;
    if (last - start > longest) longest = last - start;
  }
  return longest;
}

function copyNames(
  data: Buffer,
  starts: Int32Array,
  lengths: Int32Array,
  table: Uint8Array,
  longest: number,
): void {
  for (let r = 0; r < starts.length; r++) {
    const start = starts[r] as number;
    const row = r * longest - start;
    for (let i = start, end = start + (lengths[r] as number); i < end; i++) {
      table[row + i] = data[i] as number;
    }
  }
}

/** `order` sorted stably by the byte at `at` into `next`; false (nothing done) when all are equal. */
function countingPass(
  table: Uint8Array,
  longest: number,
  at: number,
  order: Int32Array,
  next: Int32Array,
  counts: Int32Array,
): boolean {
  const n = order.length;
  counts.fill(0);
  for (let k = 0; k < n; k++) {
    const c = table[(order[k] as number) * longest + at] as number;
    counts[c + 1] = (counts[c + 1] as number) + 1;
  }
  if (counts[(table[(order[0] as number) * longest + at] as number) + 1] === n) return false;
  for (let c = 1; c < counts.length; c++)
    counts[c] = (counts[c] as number) + (counts[c - 1] as number);
  for (let k = 0; k < n; k++) {
    const r = order[k] as number;
    const c = table[r * longest + at] as number;
    next[counts[c] as number] = r;
    counts[c] = (counts[c] as number) + 1;
  }
  return true;
}
