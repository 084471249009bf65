// Every BullMQ object vfleet creates (Queue, Worker, QueueEvents, FlowProducer) goes through
// `withErrorListener`. Without an `error` listener BullMQ prints the raw error with
// console.error — an ioredis error whose HELLO/AUTH arguments carry the Redis password, once per
// reconnect attempt per object. Connection trouble is reported by the client watch
// (src/state/redis-clients.ts) and shows up as the jobs' own failures; here it is only passed,
// redacted, to `report` (a debug line at most).
import { redactedMessage } from '../state/redact.js';

interface Emitter {
  on(event: 'error', listener: (error: Error) => void): unknown;
}

export function withErrorListener<T extends Emitter>(
  object: T,
  report: (message: string) => void = () => undefined,
): T {
  object.on('error', (error: Error) => report(redactedMessage(error)));
  return object;
}
