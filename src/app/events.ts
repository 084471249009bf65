// The fleet's event history as `vfleet events` shows it: every action's outcome and every
// controller event (detection, fence, restart, failure), oldest first, from a time on or the last
// few, and followed as they come. Data only.

import { eventsAfter, eventsFrom, lastEvents } from '../state/event-stream.js';
import type { FleetEvent } from '../state/fleet-state.js';
import type { FleetSession } from './session.js';

export type { FleetEvent };

export interface EventQuery {
  /** Events at or after this epoch ms; absent: the last `last`. */
  readonly sinceMs?: number;
  /** How many (the last ones without `sinceMs`, the first ones with it). */
  readonly last: number;
}

export function readEvents(session: FleetSession, query: EventQuery): Promise<FleetEvent[]> {
  const redis = session.connection.redis;
  const fleet = session.fleet.name;
  return query.sinceMs === undefined
    ? lastEvents(redis, fleet, query.last)
    : eventsFrom(redis, fleet, String(Math.max(0, Math.floor(query.sinceMs))), query.last);
}

/**
 * Follows the stream after `afterId` (`$`: from now) until `signal` aborts, handing each batch to
 * `onEvents`. Blocks on the server a second at a time, on a connection of its own.
 */
export async function followEvents(
  session: FleetSession,
  afterId: string,
  onEvents: (events: FleetEvent[]) => void,
  signal: AbortSignal,
): Promise<void> {
  const redis = session.connect();
  let after = afterId;
  try {
    while (!signal.aborted) {
      const events = await eventsAfter(redis, session.fleet.name, after, 1000);
      if (events.length === 0) continue;
      after = (events[events.length - 1] as FleetEvent).id;
      onEvents(events);
    }
  } finally {
    redis.disconnect();
  }
}
