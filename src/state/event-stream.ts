// Reading the fleet's event stream (keys.ts `events`) from a point on, and following it:
// `vfleet events [--since] [--follow]`. Every read is bounded (COUNT), and following blocks on
// the server (XREAD BLOCK) rather than polling.

import type { FleetEvent } from './fleet-state.js';
import { fleetKeys } from './keys.js';
import type { RedisClient } from './redis-client.js';

/** At most this many events per read. */
export const EVENTS_PAGE = 1000;

function decode(entries: [string, string[]][]): FleetEvent[] {
  return entries.map(([id, fields]) => {
    const json = fields[fields.indexOf('event') + 1] ?? '{}';
    let event: FleetEvent['event'];
    try {
      event = JSON.parse(json) as FleetEvent['event'];
    } catch {
      event = { type: 'unreadable', raw: json.slice(0, 200) };
    }
    return { id, event };
  });
}

/** Events from `start` (a stream id, or epoch ms as `<ms>`) on, oldest first, at most `count`. */
export async function eventsFrom(
  redis: RedisClient,
  fleet: string,
  start: string,
  count = EVENTS_PAGE,
): Promise<FleetEvent[]> {
  const entries = (await redis.xrange(
    fleetKeys(fleet).events,
    start,
    '+',
    'COUNT',
    Math.max(1, Math.min(EVENTS_PAGE, count)),
  )) as [string, string[]][];
  return decode(entries);
}

/** The last `count` events, oldest first. */
export async function lastEvents(
  redis: RedisClient,
  fleet: string,
  count: number,
): Promise<FleetEvent[]> {
  const entries = (await redis.xrevrange(
    fleetKeys(fleet).events,
    '+',
    '-',
    'COUNT',
    Math.max(1, Math.min(EVENTS_PAGE, count)),
  )) as [string, string[]][];
  return decode(entries.reverse());
}

/**
 * Events after `afterId` (`$`: only new ones), waiting up to `blockMs` for the first. Needs a
 * connection of its own: it blocks.
 */
export async function eventsAfter(
  redis: RedisClient,
  fleet: string,
  afterId: string,
  blockMs: number,
): Promise<FleetEvent[]> {
  const reply = (await redis.xread(
    'COUNT',
    EVENTS_PAGE,
    'BLOCK',
    Math.max(1, Math.round(blockMs)),
    'STREAMS',
    fleetKeys(fleet).events,
    afterId,
  )) as [string, [string, string[]][]][] | null;
  return reply ? decode(reply[0]?.[1] ?? []) : [];
}
