// The checks of patching (docs/patching.md) that the schema cannot state: a window's cron
// expression, its time zone and its length; a rollback asked of a group whose instances have no
// snapshot to go back to; rollout settings on a group that nothing patches.
import type { DiagnosticCode } from '../model/diagnostic.js';
import type { FleetDocument } from '../model/fleet-spec.generated.js';
import { cronProblem, knownTimezone } from '../patching/patch-window.js';
import { durationMs } from './duration.js';
import type { PathSegment } from './yaml-document.js';

type Report = (
  code: DiagnosticCode,
  message: string,
  path: PathSegment[],
  at?: 'key' | 'value',
) => void;

/** Shorter than this, a window would close before most patches have started. */
const MIN_WINDOW_MS = 60_000;

type WindowSpec = { cron: string; duration: string; timezone?: string };

export function checkPatching(
  doc: FleetDocument,
  broken: ReadonlySet<string>,
  error: Report,
  warn: Report,
): void {
  const window = (w: WindowSpec, path: PathSegment[]): void => {
    const zone = w.timezone ?? 'UTC';
    const zoneKnown = knownTimezone(zone);
    if (!zoneKnown) {
      error(
        'patch-window',
        `${JSON.stringify(zone)} is not a time zone this system knows (an IANA name such as "Europe/Paris" or "UTC")`,
        [...path, 'timezone'],
      );
    }
    const problem = cronProblem(w.cron, zoneKnown ? zone : 'UTC');
    if (problem !== null) error('patch-window', problem, [...path, 'cron']);
    if (durationMs(w.duration) < MIN_WINDOW_MS) {
      error(
        'patch-window',
        `a patch window of ${w.duration} is shorter than a minute: patches would hardly ever start`,
        [...path, 'duration'],
      );
    }
  };
  const fleetWindow = broken.has('patching') ? undefined : doc.spec.patching?.patchWindow;
  if (fleetWindow) window(fleetWindow, ['spec', 'patching', 'patchWindow']);
  const kinds = new Map(doc.spec.images.map((i) => [i.name, i.kind]));
  (doc.spec.instances ?? []).forEach((g, i) => {
    if (broken.has(`instances/${i}`)) return;
    const at = (...rest: PathSegment[]): PathSegment[] => ['spec', 'instances', i, ...rest];
    if (g.patchWindow) window(g.patchWindow, at('patchWindow'));
    if (g.patch?.onFailure === 'rollback' && kinds.get(g.image) === 'container') {
      error(
        'rollout-policy',
        `onFailure: rollback needs a snapshot to go back to, and group ${g.name} runs sandboxes, which have none: only VM groups can roll back (use stop)`,
        at('patch', 'onFailure'),
      );
    }
    if (g.patchBaseline === undefined) {
      for (const key of ['patch', 'patchWindow'] as const) {
        if (g[key] === undefined) continue;
        warn(
          'rollout-policy',
          `${key} is ignored: group ${g.name} has no patchBaseline, so nothing patches it`,
          at(key),
          'key',
        );
      }
    }
  });
}
