// `vfleet events [--follow] [--json] [--since 10m] [--last N]` (app/events.ts).
import { Command } from 'commander';
import { followEvents, readEvents } from '../../app/events.js';
import { VfleetError } from '../../model/errors.js';
import { parseDuration } from '../duration.js';
import { withSession } from '../open-session.js';
import type { Terminal } from '../terminal.js';
import { eventJson, eventLine } from '../views/events-view.js';

/** `--since`: a duration back from now (`10m`), or an ISO time. */
function sinceMs(text: string, now: number): number {
  if (/^[0-9.]+(ms|s|m|h)?$/.test(text)) return now - parseDuration(text, '--since');
  const at = Date.parse(text);
  if (Number.isNaN(at))
    throw new VfleetError(
      'usage',
      `--since takes a duration back from now (10m, 2h) or a time (2026-12-05T14:00:00Z); got ${JSON.stringify(text)}`,
    );
  return at;
}

export function eventsCommand(terminal: Terminal, setExit: (code: number) => void): Command {
  return new Command('events')
    .description(
      "the fleet's event history: every action's outcome and every controller event (detection, fence, restart, failure)",
    )
    .option('-f, --file <path>', 'the fleet spec', 'fleet.yaml')
    .option('--since <when>', 'from a duration back (10m) or a time (ISO 8601) on')
    .option('--last <n>', 'how many (at most 1000)', (v) => Number.parseInt(v, 10), 50)
    .option('--follow', 'keep printing events as they come (until Ctrl-C)', false)
    .option('--json', 'one JSON object per line (formatVersion 1)', false)
    .action(
      async (o: { file: string; since?: string; last: number; follow: boolean; json: boolean }) => {
        if (!Number.isInteger(o.last) || o.last < 1 || o.last > 1000)
          throw new VfleetError('usage', '--last takes a whole number from 1 to 1000');
        setExit(
          await withSession(
            o.file,
            terminal,
            async (session) => {
              const show = (
                events: ReadonlyArray<{ id: string; event: Record<string, unknown> }>,
              ) => {
                for (const { id, event } of events)
                  terminal.out(o.json ? eventJson(id, event) : eventLine(event));
              };
              const query =
                o.since === undefined
                  ? { last: o.last }
                  : { sinceMs: sinceMs(o.since, Date.now()), last: o.last };
              const shown = await readEvents(session, query);
              show(shown);
              if (!o.follow) return 0;
              const stop = new AbortController();
              process.once('SIGINT', () => stop.abort());
              process.once('SIGTERM', () => stop.abort());
              const after = shown.length > 0 ? (shown[shown.length - 1]?.id ?? '$') : '$';
              await followEvents(session, after, show, stop.signal);
              return 0;
            },
            { lostAfterMs: o.follow ? Number.POSITIVE_INFINITY : undefined },
          ),
        );
      },
    );
}
