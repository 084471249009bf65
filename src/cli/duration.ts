// Durations on the command line: `500ms`, `10s`, `2m`, `1h` (a bare number is seconds).
import { VfleetError } from '../model/errors.js';

const UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Milliseconds, or a usage error naming the option. */
export function parseDuration(text: string, option: string): number {
  const m = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)?$/.exec(text.trim());
  const ms = m ? Number(m[1]) * (UNITS[m[2] ?? 's'] as number) : Number.NaN;
  if (!Number.isFinite(ms) || ms <= 0 || ms > 7 * 24 * 3_600_000) {
    throw new VfleetError(
      'usage',
      `${option} takes a duration such as 500ms, 10s, 2m or 1h (more than 0, at most a week); got ${JSON.stringify(text)}`,
    );
  }
  return Math.round(ms);
}
