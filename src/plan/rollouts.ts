// A plan's rolling patches, group by group, as its views show them (text, Markdown): how many
// replicas in how many batches, and which wait for their group's maintenance window.
import type { Plan, PlanAction } from '../model/plan.js';
import { describeWindow } from '../patching/patch-window.js';

export interface Rollout {
  readonly group: string;
  readonly patches: number;
  readonly batches: number;
  /** The largest batch: the group's maxUnavailable, or fewer replicas. */
  readonly batchSize: number;
  readonly rollback: boolean;
  /** When the window next opens (ISO 8601, or `never`), if the plan was made outside it. */
  readonly deferredUntil?: string;
  /** The window, as people read it. */
  readonly window?: string;
}

/** The plan's rollouts, in the order the plan has its patches. */
export function rolloutsOf(plan: Plan): Rollout[] {
  const byGroup = new Map<string, PlanAction[]>();
  for (const a of plan.actions) {
    if (a.kind !== 'patch') continue;
    const list = byGroup.get(a.group) ?? [];
    list.push(a);
    byGroup.set(a.group, list);
  }
  return [...byGroup].map(([group, patches]) => {
    const sizes = new Map<number, number>();
    for (const p of patches) sizes.set(p.batch ?? 1, (sizes.get(p.batch ?? 1) ?? 0) + 1);
    const first = patches[0] as PlanAction;
    const deferred = patches.find((p) => p.deferredUntil !== undefined)?.deferredUntil;
    return {
      group,
      patches: patches.length,
      batches: sizes.size,
      batchSize: Math.max(...sizes.values()),
      rollback: first.rollback === true,
      ...(deferred === undefined ? {} : { deferredUntil: deferred }),
      ...(first.window === undefined ? {} : { window: describeWindow(first.window) }),
    };
  });
}

/** "deferred until 2024-06-02T02:00:00.000Z" (or "deferred: its window never opens"). */
export function deferralText(until: string): string {
  return until === 'never' ? 'deferred: its window never opens again' : `deferred until ${until}`;
}

/** One line per rollout: "web: 5 patches in 3 batches of at most 2, stop at the first failure". */
export function rolloutLine(r: Rollout): string {
  const batches =
    r.batches === 1
      ? `${r.patches === 1 ? '1 patch' : `${r.patches} patches`} in one batch`
      : `${r.patches} patches in ${r.batches} batches of at most ${r.batchSize}`;
  const onFailure = r.rollback
    ? 'roll the failed replica back and stop at the first failure'
    : 'stop at the first failure';
  const when =
    r.deferredUntil === undefined
      ? r.window === undefined
        ? ''
        : `; window ${r.window} is open`
      : `; ${deferralText(r.deferredUntil)} (window ${r.window})`;
  return `${r.group}: ${batches}, ${onFailure}${when}`;
}

/** A patch's place in its rollout, for its line: "batch 2/3" (and its deferral). */
export function batchNote(a: PlanAction, rollouts: ReadonlyMap<string, Rollout>): string {
  const r = rollouts.get(a.group);
  const batch = `batch ${a.batch ?? 1}/${r?.batches ?? 1}`;
  return a.deferredUntil === undefined ? batch : `${batch}, ${deferralText(a.deferredUntil)}`;
}
