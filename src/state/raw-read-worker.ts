// The body of the thread raw-read-thread.ts starts: the raw state read (fetchStateRaw), its
// records sorted by name, handed back to the main thread without a copy (the buffer they lie
// in and the arrays of offsets are transferred, not cloned). Nothing here prints; a failure is
// sent back as a message, which the main thread turns into a rejection.
import { parentPort, workerData } from 'node:worker_threads';
import { sortedByLeadingName } from './instance-records.js';
import type { RawEndpoint } from './raw-reply.js';
import { fetchStateRaw } from './raw-state-read.js';

const { endpoint, fleet, connectMs } = workerData as {
  readonly endpoint: RawEndpoint;
  readonly fleet: string;
  readonly connectMs: number;
};

try {
  const reply = await fetchStateRaw(endpoint, fleet, connectMs);
  const order = sortedByLeadingName(reply.records) ?? null;
  const { data, starts, ends } = reply.records;
  parentPort?.postMessage({ reply: { ...reply, order } }, [
    data.buffer as ArrayBuffer,
    starts.buffer as ArrayBuffer,
    ends.buffer as ArrayBuffer,
    ...(order ? [order.buffer as ArrayBuffer] : []),
  ]);
} catch (e) {
  parentPort?.postMessage({ error: e instanceof Error ? e.message : String(e) });
}
