// How a command opens what it works on: the spec read and validated (its diagnostics printed
// when it has errors), and a session on the fleet (app/session.ts) closed when the command ends.
import {
  type FleetSession,
  openSession,
  prefetchState,
  readValidSpec,
  type ValidSpec,
} from '../app/session.js';
import type { StateReadStart } from '../app/state-read-start.js';
import type { Terminal } from './terminal.js';
import { renderValidate } from './views/diagnostics-view.js';

/** The valid spec, or undefined with its errors printed. */
export function readSpecOrReport(file: string, terminal: Terminal): ValidSpec | undefined {
  const read = readValidSpec(file);
  if (!read.ok) {
    terminal.err(renderValidate('text', { file, diagnostics: read.diagnostics, fleet: undefined }));
    return undefined;
  }
  return read;
}

/**
 * Runs `act` on a session of the fleet the spec names, closing it after; exit 1 when the spec is
 * not valid (its errors printed). With `prefetchState` (a command that only reads, like plan),
 * the state read is sent before the spec is parsed (app/session.ts, prefetchState) — the one
 * the command started already when it gives it (app/state-read-start.ts).
 */
export async function withSession(
  file: string,
  terminal: Terminal,
  act: (session: FleetSession) => Promise<number>,
  options: {
    readonly lostAfterMs?: number;
    readonly prefetchState?: boolean | StateReadStart | undefined;
  } = {},
): Promise<number> {
  const { prefetchState: early, ...rest } = options;
  const where = { cwd: process.cwd(), env: process.env, ...rest };
  const prefetched =
    early === true
      ? await prefetchState(file, where)
      : early
        ? await prefetchState(file, where, early)
        : undefined;
  const spec = readSpecOrReport(file, terminal);
  if (!spec) {
    await prefetched?.discard();
    return 1;
  }
  const session = await openSession(spec, {
    ...where,
    ...(prefetched === undefined ? {} : { prefetched }),
  });
  try {
    return await act(session);
  } finally {
    await session.close();
  }
}
