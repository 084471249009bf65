// How `vfleet events` and `vfleet controller` show an event: one line for people, one JSON
// object per line (NDJSON) for tools.
import { jsonDocument } from './json.js';

/** One event as a line: time, what, where, why. */
export function eventLine(event: Readonly<Record<string, unknown>>): string {
  const at = typeof event.at === 'number' ? new Date(event.at).toISOString() : '?';
  const text = (v: unknown) => (v === undefined || v === null ? '' : String(v));
  if (typeof event.type === 'string') {
    const parts = [at, event.type];
    if (event.host !== undefined) parts.push(text(event.host));
    if (event.instance !== undefined) parts.push(text(event.instance));
    if (Array.isArray(event.instances)) parts.push(event.instances.join(','));
    if (Array.isArray(event.hosts)) parts.push(event.hosts.join(','));
    if (event.type === 'restarted' || event.type === 'restart-failed')
      parts.push(`from ${text(event.from)} at generation ${text(event.generation)}`);
    if (event.type === 'restarted' && event.from_replica !== undefined)
      parts.push(
        `from its replica as of ${text(event.from_replica)} (${text(event.rpoSeconds)} s of data lost)`,
      );
    if (event.type === 'migrated' || event.type === 'moved-stop-copy-start')
      parts.push(
        `from ${text(event.from)}, downtime ${text(event.downtimeMs)} ms${event.qemuDowntimeMs === undefined ? '' : ` (QEMU's ${text(event.qemuDowntimeMs)} ms)`}`,
      );
    if (event.type === 'patched')
      parts.push(
        `at generation ${text(event.generation)}: ${text(event.changed)}${event.rebootRequired ? ' (reboot required)' : ''}`,
      );
    if (event.type === 'patch-started')
      parts.push(
        `batch ${text(event.batch)} of group ${text(event.group)}: out of service until patched`,
      );
    if (event.type === 'patches-deferred')
      parts.push(`${text(event.patches)} patch(es) until ${text(event.until)}`);
    if (event.type === 'replica-full-sync' || event.type === 'replication-failed')
      parts.push(
        `to ${text(event.target)}${event.reason ? `: ${text(event.reason)}` : ''}${event.error ? `: ${text(event.error)}` : ''}`,
      );
    if (event.summary && typeof event.summary === 'object') {
      const s = event.summary as Record<string, number>;
      parts.push(
        `(${s.create ?? 0} create, ${s.move ?? 0} move, ${s.update ?? 0} update, ${s.patch ?? 0} patch, ${s.destroy ?? 0} destroy)`,
      );
    }
    const line = parts.join(' ');
    return event.cause === undefined ? line : `${line} — ${text(event.cause)}`;
  }
  // An action's outcome, written by a worker.
  const step = event.step && event.step !== event.action ? `/${text(event.step)}` : '';
  const error = event.error ? `: ${text(event.error)}` : '';
  return `${at} ${text(event.action)}${step} ${text(event.instance)} on ${text(event.host)} (generation ${text(event.generation)}) ${text(event.outcome)}${error}`;
}

export function eventJson(id: string, event: Readonly<Record<string, unknown>>): string {
  return jsonDocument({ id, ...event });
}
