// Plan: refresh, schedule, diff — the plan that takes the fleet to its spec, or (destroy) the one
// that removes every instance. Data only: the CLI shows it, apply runs it, the controller will
// compare it.
import { VfleetError } from '../model/errors.js';
import type { Fleet } from '../model/fleet.js';
import type { ObservedState } from '../model/observed.js';
import type { Explanation } from '../model/placement.js';
import type { Plan } from '../model/plan.js';
import { makeDestroyPlan } from '../plan/destroy-plan.js';
import { makePlan } from '../plan/make-plan.js';
import { planIdOf } from '../plan/plan-id.js';
import { withReplicaRestarts } from '../plan/replica-restarts.js';
import { explain } from '../scheduler/schedule.js';
import { ReplicationState } from '../state/replication-state.js';
import { type HostJudgement, judgeHosts } from './host-health.js';
import { refreshDeferringFences } from './refresh.js';
import { replicates } from './replication.js';
import type { FleetSession } from './session.js';
import { sessionSource } from './source.js';

export interface PlanResult {
  readonly plan: Plan;
  readonly observed: ObservedState;
  /** Every host's health as the plan judged it (app/host-health.ts). */
  readonly health: ReadonlyMap<string, HostJudgement>;
  /** With `explain`: every host's verdict and score for that instance. */
  readonly explanation?: Explanation;
}

export interface PlanOptions {
  /** The removal of every instance instead (vfleet destroy, plan --destroy). */
  readonly destroy?: boolean;
  /** An instance whose placement to explain (not with `destroy`). */
  readonly explain?: string;
  /** Write what refresh found (adoptions, removals) to the state: apply does, under its lock. */
  readonly persist?: boolean;
  /** The clock health is judged at (default: now). */
  readonly nowMs?: number;
  /** The time patch windows are read at (default: nowMs). */
  readonly windowsAtMs?: number;
}

/**
 * The spec's hosts, those whose instances may run elsewhere marked down (Host.down), those an
 * operator drains (`vfleet host drain`: health `draining`) marked draining.
 */
function withDownHosts(fleet: Fleet, health: ReadonlyMap<string, HostJudgement>): Fleet {
  const marked = (h: Fleet['hosts'][number]): Fleet['hosts'][number] => {
    const judged = health.get(h.name);
    if (judged?.restartable) return { ...h, down: true as const };
    return judged?.health === 'draining' && !h.drain ? { ...h, drain: true } : h;
  };
  if (![...health.values()].some((h) => h.restartable || h.health === 'draining')) return fleet;
  return {
    ...fleet,
    hosts: fleet.hosts.map(marked),
  };
}

export async function planFleet(
  session: FleetSession,
  options: PlanOptions = {},
): Promise<PlanResult> {
  if (options.destroy && options.explain !== undefined)
    throw new VfleetError('usage', '--explain shows a placement; a --destroy plan places nothing');
  // Asked of git meanwhile (a few ms of child processes), for the plan's `source`.
  const source = sessionSource(session);
  const refreshed = await refreshDeferringFences(session, { persist: options.persist === true });
  const found = refreshed.observed;
  refuseHostsGone(session, found);
  // The hosts' fences change only the generations of the plan's actions, never which actions it
  // has: a plan without actions is the same with them, and a converged fleet's plan (100,000
  // fences) does not read them. A plan with actions is made again with them, when there are any.
  const withFences = async (make: (observed: ObservedState) => Plan) => {
    const plan = make(found);
    if (plan.actions.length === 0) return { plan, observed: found };
    const observed = await refreshed.withFences();
    return { plan: observed === found ? plan : make(observed), observed };
  };
  const silent = new Set(found.unanswered ?? []);
  const health = await judgeHosts(
    session,
    options.nowMs ?? Date.now(),
    new Map(session.fleet.hosts.map((h) => [h.name, !silent.has(h.name)])),
  );
  if (options.destroy) {
    // Every instance the refreshed state holds (recorded, or reported by its host): what a host
    // no longer runs is not destroyed twice, what it runs unrecorded is not left behind.
    const { plan, observed } = await withFences((o) =>
      makeDestroyPlan(session.fleet, o, {
        id: planIdOf(session.specHash, o.version, true),
        specHash: session.specHash,
      }),
    );
    return { plan: { ...plan, source: await source }, observed, health };
  }
  // Hosts whose instances may run elsewhere now are down for the scheduler: nothing lands or is
  // reserved on them, and their protected instances restart on their failover hosts.
  const fleet = withDownHosts(session.fleet, health);
  const { placement, explanation } = explain(fleet, options.explain ?? '', {
    instances: found.instances,
  });
  const now = options.nowMs ?? Date.now();
  const { plan, observed } = await withFences((o) =>
    makePlan(fleet, placement, o, {
      id: planIdOf(session.specHash, o.version),
      specHash: session.specHash,
      nowMs: options.windowsAtMs ?? now,
    }),
  );
  const restarts = replicates(session)
    ? withReplicaRestarts(
        plan,
        session.fleet,
        await new ReplicationState(session.connection.redis, session.fleet.name).all(),
        (host) => {
          const age = health.get(host)?.leaseAgeMs;
          return age === null || age === undefined ? undefined : now - age;
        },
      )
    : plan;
  return {
    plan: { ...restarts, source: await source },
    observed,
    health,
    ...(options.explain !== undefined && explanation ? { explanation } : {}),
  };
}

/**
 * Instances the state has on hosts the spec no longer names cannot be planned for: vfleet has
 * lost the way to reach those hosts, so it could neither move their disks nor destroy them, and
 * re-creating them elsewhere would leave two copies running. The error says how to retire a host
 * (drain, then remove) and how to give up on one that is gone for good (`host forget`).
 */
function refuseHostsGone(session: FleetSession, observed: ObservedState): void {
  const known = new Set(session.fleet.hosts.map((h) => h.name));
  const stranded = new Map<string, string[]>();
  for (const i of observed.instances) {
    if (known.has(i.host)) continue;
    stranded.set(i.host, [...(stranded.get(i.host) ?? []), i.instance]);
  }
  if (stranded.size === 0) return;
  const lines = [...stranded].map(([host, names]) => {
    const shown = names.slice(0, 5).join(', ');
    const more = names.length > 5 ? ` and ${names.length - 5} more` : '';
    return `  ${host}: ${shown}${more}`;
  });
  const first = [...stranded.keys()][0] as string;
  throw new VfleetError(
    'host-not-in-spec',
    [
      `the state has instances on hosts ${session.file} no longer names, and vfleet cannot reach those hosts to move or destroy them:`,
      ...lines,
      `To retire a host, put it back with \`drain: true\` and apply (its instances move off it), then remove it.`,
      `If it is gone for good, \`vfleet host forget ${first}\` drops its instances from the state, and the next apply creates them elsewhere.`,
    ].join('\n'),
  );
}
