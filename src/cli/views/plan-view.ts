// How a plan is shown: Terraform's shape — one line per action with its symbol, then what it
// costs in licenses and leaves in failover coverage, and the closing `Plan:` line.
import type { HostJudgement } from '../../app/host-health.js';
import { ACTION_SYMBOL, type Plan, type PlanAction } from '../../model/plan.js';
import { batchNote, type Rollout, rolloutLine, rolloutsOf } from '../../plan/rollouts.js';
import { formatReasons } from './placement-view.js';

function describe(a: PlanAction, rollouts: ReadonlyMap<string, Rollout>): string {
  const failover = a.failoverHost ? ` (failover ${a.failoverHost})` : '';
  switch (a.kind) {
    case 'create':
      return `create ${a.instance} on ${a.host}${failover}${a.reason === 'new replica' ? '' : `: ${a.reason}`}`;
    case 'move':
      return `move ${a.instance} from ${a.fromHost} to ${a.host}${a.live ? ' live' : ''}${failover}${a.stopFirst ? `: ${a.reason}` : ''}`;
    case 'update':
      return `update ${a.instance} on ${a.host}: ${a.reason}`;
    case 'start':
      return `start ${a.instance} on ${a.host}: ${a.reason}`;
    case 'retarget':
      return `retarget ${a.instance} on ${a.host}: ${a.reason} (in place, keeps running)`;
    case 'destroy':
      return `destroy ${a.instance} on ${a.host}: ${a.reason}`;
    case 'patch':
      return `patch ${a.instance} on ${a.host}: ${a.reason} [${batchNote(a, rollouts)}]`;
  }
}

export function renderPlanText(plan: Plan): string {
  const out: string[] = [];
  const rollouts = rolloutsOf(plan);
  const byGroup = new Map(rollouts.map((r) => [r.group, r]));
  if (plan.actions.length === 0) {
    out.push(
      plan.destroy
        ? `No changes. Nothing to destroy: fleet ${plan.fleet} has no instances.`
        : `No changes. Fleet ${plan.fleet} matches the spec.`,
      '',
    );
  } else {
    out.push('vfleet will perform the following actions:', '');
    for (const a of plan.actions) out.push(`  ${ACTION_SYMBOL[a.kind]} ${describe(a, byGroup)}`);
    out.push('');
  }
  if (rollouts.length > 0) {
    out.push('Rolling patches (docs/patching.md):');
    for (const r of rollouts) out.push(`  ${rolloutLine(r)}`);
    out.push('');
  }
  if (plan.licenses.length > 0) {
    out.push('Licenses:');
    for (const l of plan.licenses) {
      const over =
        l.after > l.entitlement ? `  EXCEEDS the entitlement by ${l.after - l.entitlement}` : '';
      const change =
        l.before === l.after
          ? 'unchanged'
          : `${l.after > l.before ? '+' : ''}${l.after - l.before}`;
      out.push(
        `  ${l.pool} (${l.metric}): ${l.before} → ${l.after} of ${l.entitlement} (${change})${over}`,
      );
    }
    out.push('');
  }
  const f = plan.failover;
  // A destroy plan leaves nothing to cover.
  if (f.tolerate > 0 && !plan.destroy) {
    out.push(
      `Failover: ${f.covered} of ${f.protected} protected instances covered (any ${f.tolerate} ${f.domain} may fail).`,
      '',
    );
  }
  if (plan.withheld && plan.withheld.length > 0) {
    out.push(`Restarts held back (docs/replication.md):`);
    for (const w of plan.withheld)
      out.push(`  ! ${w.instance} (${w.fromHost} is down): ${w.reason}`);
    out.push('');
  }
  if (plan.unplaceable.length > 0) {
    out.push(
      `Cannot place ${plan.unplaceable.length} instance${plan.unplaceable.length === 1 ? '' : 's'}:`,
    );
    // Replicas of one group that fail for the same reasons are one line: a group scaled far
    // past the fleet's room would otherwise print a line per replica.
    const runs: Array<{ group: string; names: string[]; reasons: string }> = [];
    for (const u of plan.unplaceable) {
      const reasons = formatReasons(u.reasons);
      const last = runs[runs.length - 1];
      if (last && last.group === u.group && last.reasons === reasons) last.names.push(u.instance);
      else runs.push({ group: u.group, names: [u.instance], reasons });
    }
    for (const { group, names, reasons } of runs) {
      const who =
        names.length === 1
          ? names[0]
          : `${names.length} of ${group} (${names[0]} … ${names[names.length - 1]})`;
      out.push(`  ! ${who}: ${reasons}`);
    }
    out.push('');
  }
  const s = plan.summary;
  const deferred = plan.actions.filter((a) => a.deferredUntil !== undefined).length;
  out.push(
    `Plan: ${s.create} to create, ${s.move} to move, ${s.update} to update, ${s.patch} to patch${deferred > 0 ? ` (${deferred} deferred)` : ''}, ${s.destroy} to destroy.`,
  );
  return `${out.join('\n')}\n`;
}

/**
 * What the plan could not see: hosts not ok, whose instances are unknown. A host the plan treats
 * as down has its instances restarted elsewhere; one that is only suspect or lost (not yet
 * restartable, or judged with no controller running) keeps them where they were.
 */
export function healthWarnings(health: ReadonlyMap<string, HostJudgement>): string[] {
  const warnings: string[] = [];
  for (const [host, j] of health) {
    if (j.health === 'ok' || j.health === 'draining') continue;
    const age = j.leaseAgeMs === null ? '' : `, lease ${(j.leaseAgeMs / 1000).toFixed(1)}s old`;
    warnings.push(
      j.restartable
        ? `${host} is ${j.health}${age}: its instances are planned to restart elsewhere`
        : j.judgedBy === 'controller'
          ? `${host} is ${j.health}${age}: its instances are unknown; they restart elsewhere once it has been lost for two lease ttls`
          : `${host} is ${j.health}${age} (it does not answer): its instances are unknown, and with no controller running nothing restarts them — start \`vfleet controller\`, or assert the host is off with \`vfleet host fenced ${host}\``,
    );
  }
  return warnings;
}
