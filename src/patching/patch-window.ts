// Maintenance windows (docs/patching.md): a window opens at every time its cron expression names,
// read in its time zone, and stays open for its duration. Pure: the time is always given (habit
// 5, docs/architecture.md); cron-parser (a computation, no I/O) does the calendar arithmetic.
import { CronExpressionParser } from 'cron-parser';
import type { PatchWindow } from '../model/fleet.js';

/** The window at a time: open (until when) or closed (until when it next opens, or never). */
export type WindowState =
  | { readonly open: true; readonly openedAt: number; readonly closesAt: number }
  | { readonly open: false; readonly opensAt: number | null };

const FIELDS = 5;

/**
 * Why a cron expression cannot be a window's, or null: five fields (minute hour day-of-month
 * month day-of-week; no seconds), each as cron-parser reads it, and a time it names at all.
 */
export function cronProblem(cron: string, timezone: string): string | null {
  const fields = cron.trim().split(/\s+/);
  if (fields.length !== FIELDS) {
    return `a window's cron expression has five fields (minute hour day-of-month month day-of-week), not ${fields.length}`;
  }
  try {
    const expression = CronExpressionParser.parse(cron, {
      tz: timezone,
      currentDate: new Date(0),
    });
    if (!expression.hasNext()) return `${JSON.stringify(cron)} names no time at all`;
    expression.next();
  } catch (e) {
    return `${JSON.stringify(cron)} is not a cron expression: ${e instanceof Error ? e.message : String(e)}`;
  }
  return null;
}

/** Whether `zone` is an IANA time zone this runtime knows. */
export function knownTimezone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

function parse(window: PatchWindow, at: number) {
  return CronExpressionParser.parse(window.cron, {
    tz: window.timezone,
    currentDate: new Date(at),
  });
}

/**
 * The window at `nowMs`: open when the latest opening at or before now is less than a duration
 * ago (windows that overlap count as one), else when it next opens.
 */
export function windowAt(window: PatchWindow, nowMs: number): WindowState {
  // prev() is strictly before its current date: a millisecond on counts an opening at now itself.
  const before = parse(window, nowMs + 1);
  const openedAt = before.hasPrev() ? before.prev().getTime() : null;
  if (openedAt !== null && nowMs < openedAt + window.durationMs) {
    return { open: true, openedAt, closesAt: openedAt + window.durationMs };
  }
  const after = parse(window, nowMs);
  return { open: false, opensAt: after.hasNext() ? after.next().getTime() : null };
}

/** "0 2 * * sun for 4h (UTC)": a window as people read it. */
export function describeWindow(window: PatchWindow): string {
  return `${window.cron} for ${window.duration} (${window.timezone})`;
}
