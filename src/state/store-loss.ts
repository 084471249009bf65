// The store this process declared lost (redis-clients.ts records it), for the CLI's error
// boundary: kept apart from the clients so that the boundary does not load ioredis for commands
// that never talk to Redis.
import type { VfleetError } from '../model/errors.js';

let lastLost: VfleetError | undefined;

/** The store this process lost, if it lost one: what the CLI prints instead of the errors. */
export function lostStore(): VfleetError | undefined {
  return lastLost;
}

export function recordLostStore(lost: VfleetError): void {
  lastLost = lost;
}
