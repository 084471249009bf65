// Plan's state read on a thread of its own (raw-read-worker.ts), sent before the spec is parsed
// (app/session.ts, prefetchState). On the main thread, the reply could only be read once the
// spec was parsed (that parse does not yield): Redis filled the sockets' buffers and waited,
// and the rest of the reply's megabytes came afterwards, a few kilobytes per wake-up of both
// processes. The thread reads it while the spec is parsed, frames it and sorts its records,
// and hands the buffer over without a copy. Anything that fails rejects, and the session reads
// through its own connection.
import { Worker } from 'node:worker_threads';
import type { StateReply } from './fleet-state.js';
import type { RawEndpoint } from './raw-reply.js';

/** fetchStateRaw on a worker thread; `signal` abandons it (the thread is stopped). */
export function fetchStateInThread(
  endpoint: RawEndpoint,
  fleet: string,
  connectMs: number,
  signal: AbortSignal,
): Promise<StateReply> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./raw-read-worker.js', import.meta.url), {
      workerData: { endpoint, fleet, connectMs },
      stdout: true,
      stderr: true,
    });
    let settled = false;
    const finish = (error: Error | undefined, reply?: StateReply) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', abandon);
      void worker.terminate();
      if (error) reject(error);
      else resolve(reply as StateReply);
    };
    const abandon = () => finish(new Error('abandoned'));
    if (signal.aborted) abandon();
    signal.addEventListener('abort', abandon, { once: true });
    worker.once('message', (message: { reply?: Transferred; error?: string }) => {
      if (message.reply) finish(undefined, received(message.reply));
      else finish(new Error(message.error ?? 'no reply'));
    });
    worker.once('error', (e) => finish(e instanceof Error ? e : new Error(String(e))));
    worker.once('exit', () => finish(new Error('the state read stopped')));
  });
}

/** A StateReply as it crosses threads: its buffer arrives as a plain Uint8Array. */
type Transferred = Omit<StateReply, 'records'> & {
  readonly records: {
    readonly data: Uint8Array;
    readonly starts: Int32Array;
    readonly ends: Int32Array;
  };
};

function received(reply: Transferred): StateReply {
  const { data } = reply.records;
  return {
    ...reply,
    records: { ...reply.records, data: Buffer.from(data.buffer, data.byteOffset, data.byteLength) },
  };
}
