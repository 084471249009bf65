// The time `plan` and `apply` read patch windows at (docs/patching.md): now, or VFLEET_NOW — an
// ISO 8601 instant ("2024-06-02T02:30:00Z") or milliseconds since the epoch — to see what a plan
// would do at another time, and for tests (habit 5: the clock comes in). A malformed value is an
// error. Only the windows read it: health, leases and events keep the real clock.
import { VfleetError } from '../model/errors.js';

export function windowClock(env: NodeJS.ProcessEnv): () => number {
  const fixed = env.VFLEET_NOW;
  if (fixed === undefined || fixed === '') return () => Date.now();
  const ms = /^[0-9]{1,15}$/.test(fixed) ? Number(fixed) : Date.parse(fixed);
  if (!Number.isFinite(ms) || !/^[0-9]{1,15}$|^\d{4}-\d{2}-\d{2}T/.test(fixed)) {
    throw new VfleetError(
      'usage',
      `VFLEET_NOW must be an ISO 8601 instant (2024-06-02T02:30:00Z) or milliseconds since the epoch, not ${JSON.stringify(fixed.slice(0, 40))}`,
    );
  }
  return () => ms;
}
