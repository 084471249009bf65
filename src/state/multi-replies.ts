// A MULTI's replies as the state's reads and writes use them (fleet-state.ts): ioredis reports
// errors per command, and an aborted transaction as null.
import { VfleetError } from '../model/errors.js';

/** The replies of a MULTI, or its first error (ioredis reports errors per command). */
export function replies(results: [Error | null, unknown][] | null, expected: number): unknown[] {
  if (results === null || results.length !== expected) {
    throw new VfleetError('redis-transaction', 'a Redis transaction was aborted', {
      retryable: true,
    });
  }
  const failed = results.find(([error]) => error !== null)?.[0];
  if (failed) {
    throw new VfleetError('redis-command', `Redis refused a state command: ${failed.message}`, {
      retryable: false,
    });
  }
  return results.map(([, value]) => value);
}
