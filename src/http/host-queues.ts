// The fleet's host queues as the HTTP server reads them: one BullMQ Queue per host of the current
// spec (`host.<name>`, the fleet's prefix) on one connection of the session's, made again when
// the session changes (a controller following a new spec), and BullMQ's own Prometheus export of
// every one of them (`Queue.exportPrometheusMetrics`, BullMQ ≥ 5.x) merged into one exposition.
import { Queue } from 'bullmq';
import type { FleetSession } from '../app/session.js';
import { withErrorListener } from '../queue/error-listener.js';
import { queueNameOf } from '../queue/plan-jobs.js';

export interface HostQueueSet {
  readonly session: FleetSession;
  /** host → its queue, in the spec's order. */
  readonly queues: ReadonlyMap<string, Queue>;
}

/** How many queues' exports are in flight at once (exportQueueMetrics says why). */
const EXPORTS_AT_ONCE = 128;

export class HostQueues {
  private current: HostQueueSet | undefined;
  private readonly retired: Queue[] = [];

  /**
   * The queues of this session's hosts; `changed` is told when they are new (the board lists
   * them again).
   */
  of(session: FleetSession, changed?: (set: HostQueueSet) => void): HostQueueSet {
    if (this.current?.session === session) return this.current;
    if (this.current) this.retired.push(...this.current.queues.values());
    const connection = session.connect({ autoPipelining: true });
    const queues = new Map(
      session.fleet.hosts.map((h) => [
        h.name,
        withErrorListener(
          new Queue(queueNameOf(h.name), {
            connection,
            prefix: session.queuePrefix,
            // The workers checked the server's version already; 1,000 queues would each send
            // an INFO for it.
            skipVersionCheck: true,
          }),
        ),
      ]),
    );
    this.current = { session, queues };
    changed?.(this.current);
    // The old session closes its own connection; its Queue objects only need letting go.
    void this.closeRetired();
    return this.current;
  }

  private async closeRetired(): Promise<void> {
    const old = this.retired.splice(0);
    await Promise.all(old.map((q) => q.close().catch(() => undefined)));
  }

  async close(): Promise<void> {
    if (this.current) this.retired.push(...this.current.queues.values());
    this.current = undefined;
    await this.closeRetired();
  }
}

/**
 * BullMQ's export of every queue, as one exposition: each call prints its own `# HELP` and
 * `# TYPE` lines, and the text format allows a family's header once with all its samples
 * together, so the samples are regrouped by family. Each queue's samples carry its host besides
 * BullMQ's `queue` label.
 */
export async function exportQueueMetrics(set: HostQueueSet): Promise<string> {
  // At most EXPORTS_AT_ONCE queues at a time: all thousand at once keep some 11,000 commands and
  // their promises alive together, which the young-generation collector then copies; measured on
  // 1,000 queues, a window of 100–200 takes about a third less CPU and no more time.
  const entries = [...set.queues];
  const texts: string[] = new Array(entries.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(EXPORTS_AT_ONCE, entries.length) }, async () => {
      while (next < entries.length) {
        const i = next++;
        const [host, queue] = entries[i] as [string, Queue];
        texts[i] = await queue.exportPrometheusMetrics({ host });
      }
    }),
  );
  const families = new Map<string, { head: string[]; samples: string[] }>();
  const family = (name: string) => {
    let f = families.get(name);
    if (!f) {
      f = { head: [], samples: [] };
      families.set(name, f);
    }
    return f;
  };
  // Plain string work: a thousand queues are some 14,000 lines per scrape.
  for (const text of texts) {
    for (const line of text.split('\n')) {
      if (line === '') continue;
      if (line.startsWith('# ')) {
        const [, kind, name] = line.split(' ', 3);
        if ((kind !== 'HELP' && kind !== 'TYPE') || !name) continue;
        const f = family(name);
        if (!f.head.some((h) => h.startsWith(`# ${kind} `))) f.head.push(line);
        continue;
      }
      if (line.startsWith('#')) continue;
      const brace = line.indexOf('{');
      const name = line.slice(0, brace >= 0 ? brace : line.indexOf(' '));
      if (name === '') continue;
      // BullMQ writes `{queue="…", state="…"}`: the space after a comma is dropped, as other
      // exporters write it (some parsers refuse it). An escaped quote in a value is `\"`.
      family(name).samples.push(line.includes('", ') ? line.replace(/(?<!\\)", /g, '",') : line);
    }
  }
  let out = '';
  for (const f of families.values()) out += `${[...f.head, ...f.samples].join('\n')}\n`;
  return out;
}
