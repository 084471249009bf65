// What the live migration tests watch of a guest that counts (the test images' `vfleet.counter`):
// every `VFLEET-COUNTER n` line as it appears on any of the serial consoles given, with when this
// process saw it — so a test can check that the count never goes back across hosts, and measure
// the longest silence a migration caused, as the guest's console shows it.
import { readFileSync, statSync } from 'node:fs';

export interface CounterLine {
  readonly value: number;
  /** When this process first saw the line (ms since the epoch). */
  readonly at: number;
  /** The serial log it was on. */
  readonly log: string;
}

export interface CounterWatch {
  readonly seen: readonly CounterLine[];
  /** Adds a console to watch (a host the guest is about to move to). */
  add(log: string): void;
  /** The values seen on `log`, or on any when omitted. */
  values(log?: string): number[];
  stop(): void;
}

// Whole lines only: a line still being written ("VFLEET-COUNTER 1" of 10) is not a count.
const LINE = /^VFLEET-COUNTER (\d+)\r?\n/gm;

/**
 * Polls the logs every `intervalMs`. A console a host removed keeps what was seen of it; one made
 * anew at the same path (the guest back on that host) is read from its start.
 */
export function watchCounters(logs: readonly string[], intervalMs = 10): CounterWatch {
  const seen: CounterLine[] = [];
  const counted = new Map<string, { file: number; lines: number }>(
    logs.map((l) => [l, { file: -1, lines: 0 }]),
  );
  const poll = () => {
    const at = Date.now();
    for (const [log, was] of counted) {
      let text: string;
      let file: number;
      try {
        file = statSync(log).ino;
        text = readFileSync(log, 'utf8');
      } catch {
        continue; // not there (yet, or any more)
      }
      const from = file === was.file ? was.lines : 0;
      const lines = [...text.matchAll(LINE)];
      for (const m of lines.slice(from)) seen.push({ value: Number(m[1]), at, log });
      counted.set(log, { file, lines: Math.max(from, lines.length) });
    }
  };
  poll();
  const timer = setInterval(poll, intervalMs);
  return {
    seen,
    add: (log) => {
      if (!counted.has(log)) counted.set(log, { file: -1, lines: 0 });
    },
    values: (log) => seen.filter((l) => log === undefined || l.log === log).map((l) => l.value),
    stop: () => {
      poll();
      clearInterval(timer);
    },
  };
}

/**
 * Where the count went back, repeated or jumped by more than three, as "a → b"; empty when it
 * only went up. A step of two or three is not a break: the source's console can be removed with
 * its folder before this process reads its last line (seen once: 38 → 40 across a move), which
 * `countSkips` tells; a longer run of lines unseen would hide what the guest did meanwhile.
 */
export function countBreaks(lines: readonly CounterLine[]): string[] {
  const breaks: string[] = [];
  for (let i = 1; i < lines.length; i++) {
    const [before, now] = [lines[i - 1] as CounterLine, lines[i] as CounterLine];
    if (now.value <= before.value || now.value > before.value + 3)
      breaks.push(`${before.value} → ${now.value}`);
  }
  return breaks;
}

/** Where the count went up by more than one (a line this process did not see), as "a → b". */
export function countSkips(lines: readonly CounterLine[]): string[] {
  const skips: string[] = [];
  for (let i = 1; i < lines.length; i++) {
    const [before, now] = [lines[i - 1] as CounterLine, lines[i] as CounterLine];
    if (now.value > before.value + 1) skips.push(`${before.value} → ${now.value}`);
  }
  return skips;
}

/**
 * The silence on the consoles across a move from one log to another: the time between the last
 * line seen on `from` and the first seen on `to` (the guest prints once a second, so a pause of
 * d ms shows as a gap of up to 1000 + d ms).
 */
export function gapAcross(lines: readonly CounterLine[], from: string, to: string): number {
  const last = lines.filter((l) => l.log === from).at(-1);
  const first = lines.find((l) => l.log === to);
  if (!last || !first) throw new Error(`no line on ${last ? to : from}`);
  return first.at - last.at;
}
