// The hosts' health as status and plan use it: the leader controller's judgement when one runs
// (it measures each lease's age by watching it change, on its own clock: controller/liveness.ts),
// and otherwise the best this process can say — an operator's fence, the last lease's age by the
// wall clock, whether the host answers. Only the leader's judgement (or an operator's fence) ever
// lets a plan restart a host's instances elsewhere: a plan made without a controller never
// guesses that a host is dead.
import {
  DEFAULT_LIVENESS,
  type HostHealth,
  healthOf,
  instancesUnknown,
  type LivenessPolicy,
} from '../model/host-health.js';
import type { FleetSession } from './session.js';

export interface HostJudgement {
  readonly health: HostHealth;
  /** ms since the host's lease last changed (null: no lease ever seen). */
  readonly leaseAgeMs: number | null;
  /** Its instances may run elsewhere now (the plan marks the host down). */
  readonly restartable: boolean;
  /** Who judged: the leader controller, or this process from what it could read. */
  readonly judgedBy: 'controller' | 'observer';
}

/**
 * Every spec host's health at `nowMs`. `answering`: the hosts that answered a listing just now
 * (absent: not asked), used when no controller judges.
 */
export async function judgeHosts(
  session: FleetSession,
  nowMs: number,
  answering?: ReadonlyMap<string, boolean>,
): Promise<Map<string, HostJudgement>> {
  const control = session.control;
  const [leader, published, fenced, leases, drained] = await Promise.all([
    control.leader(),
    control.publishedHealth(),
    control.fenced(),
    control.leases(),
    control.drained(),
  ]);
  const policy: LivenessPolicy = leader?.policy ?? DEFAULT_LIVENESS;
  const judged = new Map<string, HostJudgement>();
  for (const spec of session.fleet.hosts) {
    // An operator's drain (`vfleet host drain`) counts as the spec's `drain: true`.
    const host = drained.has(spec.name) ? { ...spec, drain: true } : spec;
    const isFenced = fenced.has(host.name);
    const fromLeader = leader ? published.get(host.name) : undefined;
    // The leader republishes every tick; a judgement older than a ttl is not the leader's now.
    if (fromLeader && nowMs - fromLeader.at <= policy.ttlMs) {
      // nowMs may be a moment older than the judgement (taken before this process's reads).
      const age =
        fromLeader.leaseAgeMs === null
          ? null
          : fromLeader.leaseAgeMs + Math.max(0, nowMs - fromLeader.at);
      judged.set(host.name, {
        health: isFenced
          ? 'fenced'
          : host.drain && fromLeader.health === 'ok'
            ? 'draining'
            : fromLeader.health,
        leaseAgeMs: age,
        restartable: isFenced || fromLeader.restartable,
        judgedBy: 'controller',
      });
      continue;
    }
    const lease = leases.get(host.name);
    const age = lease ? Math.max(0, nowMs - lease.at) : null;
    const answers = answering?.get(host.name);
    // No controller: a host that answers is ok whatever its lease says; one that does not is at
    // least suspect (its lease, if any, may say lost). Never restartable but by an operator.
    let health: HostHealth;
    if (answers === true) health = healthOf(0, policy, { fenced: isFenced, draining: host.drain });
    else if (age !== null)
      health = healthOf(age, policy, { fenced: isFenced, draining: host.drain });
    else
      health = healthOf(answers === false ? policy.ttlMs + 1 : 0, policy, {
        fenced: isFenced,
        draining: host.drain,
      });
    if (answers === false && (health === 'ok' || health === 'draining')) health = 'suspect';
    judged.set(host.name, {
      health,
      leaseAgeMs: age,
      restartable: isFenced,
      judgedBy: 'observer',
    });
  }
  return judged;
}

export { instancesUnknown };
