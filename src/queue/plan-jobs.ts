// A plan as BullMQ jobs: one queue per host (`host.<name>`), deterministic job ids (so enqueuing
// twice is harmless; BullMQ forbids ':' in them), and waves: an action waits for the actions it
// depends on (what leaves a host before what lands there), so each wave is enqueued when the
// previous one has finished. A move is a flow across two queues: copy the disk on the source,
// create and start on the target, then stop and destroy on the source. A stop-first move (one of a
// cycle of moves, plan/move-cycles.ts) is two roots in two waves: `vacate` on the source (stop,
// copy the disk to the target, remove), and later `move-in` on the target.

import type { EngineImage } from '../engines/host-engine.js';
import type { Plan, PlanAction } from '../model/plan.js';

export type JobStep =
  | 'create'
  | 'start'
  | 'retarget'
  | 'replace'
  | 'destroy'
  | 'copy-disk'
  | 'move-in'
  | 'move-out'
  | 'vacate'
  | 'remove-stray'
  | 'patch'
  | 'migrate';

export interface ActionJobData {
  readonly planId: string;
  readonly fleet: string;
  readonly step: JobStep;
  readonly host: string;
  readonly action: PlanAction;
  /** For steps that create an instance. */
  readonly image: EngineImage | null;
  /**
   * The fencing token of the controller that enqueued the job (state/control-state.ts): a
   * worker refuses it unless that controller is still the leader. Absent for `vfleet apply`.
   */
  readonly leaderToken?: number;
}

export interface JobNode {
  readonly name: JobStep;
  readonly queueName: string;
  readonly jobId: string;
  readonly data: ActionJobData;
  readonly children: readonly JobNode[];
  /** A stop-first move's first half: the action's outcome only if it fails. */
  readonly leaving?: boolean;
}

export const queueNameOf = (host: string): string => `host.${host}`;

export function jobIdOf(planId: string, instance: string, step: JobStep): string {
  const id = `${planId}.${instance}.${step}`;
  // Names are DNS labels and plan ids hex: this can only fail on a bug, never on user input.
  if (id.includes(':')) throw new Error(`job id ${id} contains ':'`);
  return id;
}

/**
 * One root of a wave: an action, or one half of a stop-first move (`vacate` on the source in the
 * first wave, `move-in` on the target later).
 */
export interface WaveEntry {
  readonly action: PlanAction;
  readonly part: 'whole' | 'vacate' | 'move-in';
}

export interface PlanJobs {
  /** The plan's roots in waves; wave n+1 waits for wave n. */
  readonly waves: readonly (readonly WaveEntry[])[];
  /**
   * An entry's job tree, made when it is enqueued: a wave of 100,000 creates holds its jobs'
   * data only while they run, a slice at a time (run-plan.ts).
   */
  jobOf(entry: WaveEntry): JobNode;
}

/** The plan's actions as waves of job trees; wave n+1 waits for wave n. */
export function planJobs(plan: Plan): JobNode[][] {
  const { waves, jobOf } = planWaves(plan);
  return waves.map((wave) => wave.map(jobOf));
}

/** The plan's actions in waves, each entry's job tree made on demand. */
export function planWaves(plan: Plan, leaderToken?: number): PlanJobs {
  // The plan carries its images (a saved plan runs what it showed, whatever the spec says now):
  // one object per image, shared by its jobs' data (100,000 creates name a few dozen).
  const imageOf = (name: string): EngineImage | null => plan.images[name] ?? null;
  const node = (
    step: JobStep,
    host: string,
    action: PlanAction,
    children: JobNode[] = [],
  ): JobNode => ({
    name: step,
    queueName: queueNameOf(host),
    jobId: jobIdOf(plan.id, action.instance, step),
    data: {
      planId: plan.id,
      fleet: plan.fleet,
      step,
      host,
      action,
      ...(leaderToken === undefined ? {} : { leaderToken }),
      image:
        step === 'destroy' ||
        step === 'move-out' ||
        step === 'vacate' ||
        step === 'remove-stray' ||
        step === 'copy-disk' ||
        step === 'patch' ||
        step === 'retarget'
          ? null
          : imageOf(action.image),
    },
    children,
  });
  const tree = (a: PlanAction): JobNode => {
    switch (a.kind) {
      case 'create':
        return node('create', a.host, a);
      case 'start':
        return node('start', a.host, a);
      case 'retarget':
        return node('retarget', a.host, a);
      case 'update':
        return node('replace', a.host, a);
      case 'destroy':
        return node(a.stray ? 'remove-stray' : 'destroy', a.host, a);
      case 'patch':
        return node('patch', a.host, a);
      case 'move': {
        const from = a.fromHost as string;
        // A live migration is one job on the source: the VM runs on one host or the other,
        // never stopped (its fallback, stop-copy-start, runs in the same job: action-handler.ts).
        if (a.live) return node('migrate', from, a);
        return node('move-out', from, a, [
          node('move-in', a.host, a, [node('copy-disk', from, a)]),
        ]);
      }
    }
  };

  const byId = new Map(plan.actions.map((a) => [a.id, a]));
  const level = new Map<string, number>();
  // The wave a dependency `dep` of `a` ends in: a stop-first move has left its source after
  // wave 0, which is all another instance's action waits for.
  const doneAfter = (a: PlanAction, dep: PlanAction, path: Set<string>) =>
    dep.stopFirst && dep.instance !== a.instance ? 0 : levelOf(dep, path);
  const levelOf = (a: PlanAction, path: Set<string> = new Set()): number => {
    const known = level.get(a.id);
    if (known !== undefined) return known;
    // breakMoveCycles leaves none: one here is a bug, not something a spec can cause.
    if (path.has(a.id)) throw new Error(`plan ${plan.id} has a dependency cycle through ${a.id}`);
    path.add(a.id);
    let l = a.stopFirst ? 1 : 0;
    for (const dep of a.dependsOn) {
      const d = byId.get(dep);
      if (d) l = Math.max(l, doneAfter(a, d, path) + 1);
    }
    path.delete(a.id);
    level.set(a.id, l);
    return l;
  };
  const waves: WaveEntry[][] = [];
  const put = (l: number, entry: WaveEntry) => {
    while (waves.length <= l) waves.push([]);
    waves[l]?.push(entry);
  };
  for (const a of plan.actions) {
    if (a.stopFirst && a.kind === 'move') {
      put(0, { action: a, part: 'vacate' });
      put(levelOf(a), { action: a, part: 'move-in' });
    } else {
      put(levelOf(a), { action: a, part: 'whole' });
    }
  }
  return {
    waves,
    jobOf: ({ action: a, part }) => {
      switch (part) {
        case 'vacate':
          return { ...node('vacate', a.fromHost as string, a), leaving: true };
        case 'move-in':
          return node('move-in', a.host, a);
        case 'whole':
          return tree(a);
      }
    },
  };
}
