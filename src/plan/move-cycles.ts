// Moves that wait for each other: a swap (a goes h1 → h2 while b goes h2 → h1) makes each move's
// landing wait for the other's leaving, a cycle no order can run. The way any swap is done: one
// member is stopped first — stopped on its source, its disk copied to its target, removed from
// the source — so what waits for its room can land; it starts on its target once what it waits
// for has left. The actions of other instances that wait for a stop-first move wait only for that
// first half (they need its room, nothing else); its own patch waits for all of it.
import type { PlanAction } from '../model/plan.js';

/**
 * The plan's actions with `stopFirst` set on as few moves as it takes to leave no cycle: one per
 * strongly connected component at a time, the smallest id (deterministic), until none is left.
 */
export function breakMoveCycles(actions: readonly PlanAction[]): PlanAction[] {
  const byId = new Map(actions.map((a) => [a.id, a]));
  const stopFirst = new Set<string>();
  const cycleOf = new Map<string, readonly string[]>();
  const edgesOf = (a: PlanAction): string[] =>
    a.dependsOn.filter((d) => {
      const dep = byId.get(d);
      // A stop-first move's first half waits for nothing: an edge to it closes no cycle.
      return dep !== undefined && !(stopFirst.has(d) && dep.instance !== a.instance);
    });
  for (;;) {
    const cyclic = stronglyConnected(actions, edgesOf).filter((c) => c.length > 1);
    if (cyclic.length === 0) break;
    for (const component of cyclic) {
      const moves = component.filter((id) => byId.get(id)?.kind === 'move').sort();
      // Only moves wait for what leaves a host and leave one themselves; anything else in a
      // cycle is a bug in whoever built the dependencies.
      const chosen = moves[0];
      if (chosen === undefined) throw new Error(`a dependency cycle without a move: ${component}`);
      stopFirst.add(chosen);
      cycleOf.set(chosen, component);
    }
  }
  if (stopFirst.size === 0) return [...actions];
  return actions.map((a) => {
    if (!stopFirst.has(a.id)) return a;
    const cycle = cycleOf.get(a.id) ?? [];
    const partners = a.dependsOn.filter((d) => cycle.includes(d)).map(instanceOf);
    return {
      ...a,
      stopFirst: true,
      reason: `stopped first: a cycle of moves with ${partners.join(', ')}`,
    };
  });
}

const instanceOf = (id: string) => id.replace(/\.[a-z]+$/, '');

/** Tarjan's algorithm, iterative (a plan may hold 100,000 actions): components in reverse topological order. */
function stronglyConnected(
  actions: readonly PlanAction[],
  edgesOf: (a: PlanAction) => string[],
): string[][] {
  const byId = new Map(actions.map((a) => [a.id, a]));
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const components: string[][] = [];
  let next = 0;
  for (const root of actions) {
    if (index.has(root.id)) continue;
    const work: Array<{ id: string; edges: string[]; i: number }> = [];
    const open = (id: string) => {
      index.set(id, next);
      low.set(id, next);
      next++;
      stack.push(id);
      onStack.add(id);
      work.push({ id, edges: edgesOf(byId.get(id) as PlanAction), i: 0 });
    };
    open(root.id);
    while (work.length > 0) {
      const frame = work[work.length - 1] as (typeof work)[number];
      if (frame.i < frame.edges.length) {
        const to = frame.edges[frame.i++] as string;
        if (!index.has(to)) open(to);
        else if (onStack.has(to)) {
          low.set(frame.id, Math.min(low.get(frame.id) as number, index.get(to) as number));
        }
        continue;
      }
      work.pop();
      const parent = work[work.length - 1];
      if (parent)
        low.set(parent.id, Math.min(low.get(parent.id) as number, low.get(frame.id) as number));
      if (low.get(frame.id) === index.get(frame.id)) {
        const component: string[] = [];
        let id: string;
        do {
          id = stack.pop() as string;
          onStack.delete(id);
          component.push(id);
        } while (id !== frame.id);
        components.push(component);
      }
    }
  }
  return components;
}
