// A plan as BullMQ jobs: one queue per host (`host.<name>`), deterministic job ids (so enqueuing
// twice is harmless; BullMQ forbids ':' in them), and waves: an action waits for the actions it
// depends on (what leaves a host before what lands there), so each wave is enqueued when the
// previous one has finished. A move is a flow across two queues: copy the disk on the source,
// create and start on the target, then stop and destroy on the source.

import type { EngineImage } from '../engines/host-engine.js';
import type { Fleet } from '../model/fleet.js';
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
  | 'patch';

export interface ActionJobData {
  readonly planId: string;
  readonly fleet: string;
  readonly step: JobStep;
  readonly host: string;
  readonly action: PlanAction;
  /** For steps that create an instance. */
  readonly image: EngineImage | null;
}

export interface JobNode {
  readonly name: JobStep;
  readonly queueName: string;
  readonly jobId: string;
  readonly data: ActionJobData;
  readonly children: readonly JobNode[];
}

export const queueNameOf = (host: string): string => `host.${host}`;

export function jobIdOf(planId: string, instance: string, step: JobStep): string {
  const id = `${planId}.${instance}.${step}`;
  // Names are DNS labels and plan ids hex: this can only fail on a bug, never on user input.
  if (id.includes(':')) throw new Error(`job id ${id} contains ':'`);
  return id;
}

/** The plan's actions as waves of job trees; wave n+1 waits for wave n. */
export function planJobs(plan: Plan, fleet: Fleet): JobNode[][] {
  const images = new Map(fleet.images.map((i) => [i.name, i]));
  const imageOf = (name: string): EngineImage | null => {
    const image = images.get(name);
    return image
      ? {
          name: image.name,
          kind: image.kind,
          os: image.os,
          packages: image.packages,
          ...(image.source === undefined ? {} : { source: image.source }),
          ...(image.kind === 'container' ? { command: image.command } : {}),
        }
      : null;
  };
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
      image:
        step === 'destroy' ||
        step === 'move-out' ||
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
        return node('destroy', a.host, a);
      case 'patch':
        return node('patch', a.host, a);
      case 'move': {
        const from = a.fromHost as string;
        return node('move-out', from, a, [
          node('move-in', a.host, a, [node('copy-disk', from, a)]),
        ]);
      }
    }
  };

  const byId = new Map(plan.actions.map((a) => [a.id, a]));
  const level = new Map<string, number>();
  const levelOf = (a: PlanAction, path: Set<string> = new Set()): number => {
    const known = level.get(a.id);
    if (known !== undefined) return known;
    if (path.has(a.id)) throw new Error(`plan ${plan.id} has a dependency cycle through ${a.id}`);
    path.add(a.id);
    let l = 0;
    for (const dep of a.dependsOn) {
      const d = byId.get(dep);
      if (d) l = Math.max(l, levelOf(d, path) + 1);
    }
    path.delete(a.id);
    level.set(a.id, l);
    return l;
  };
  const waves: JobNode[][] = [];
  for (const a of plan.actions) {
    const l = levelOf(a);
    while (waves.length <= l) waves.push([]);
    waves[l]?.push(tree(a));
  }
  return waves;
}
