// plan(fleet, placement, observed) → Plan: the diff between where the scheduler wants every
// instance and where the state store says it is. Pure: ids, hashes and versions come in.
//
// Per instance:
//   desired, not observed              → create   (generation 1)
//   desired elsewhere than observed    → move     (a flow in apply: prepare on the target, start
//                                                  there, then stop and destroy on the source)
//   observed on a host that is down    → create   (a restart: on the failover host when it
//   (Host.down), desired elsewhere                 fits; the down host is not called)
//   same host, image or resources
//   changed                            → update   (a replace: destroy, create)
//   same host, only the failover host
//   changed                            → retarget (recorded; the host is not called)
//   same host, unchanged, not running  → start
//   observed, no longer desired        → destroy
//   desired but unplaceable            → nothing; reported (an observed one keeps running)
//   below its patch baseline (as the host
//   reports it, or as its image will be)→ patch    (after the instance's other action; one
//                                                  replica of a group at a time: a chain)
// Every action carries the instance's next generation: the host refuses older ones (fencing).
// Anything that lands on a host waits for what leaves it (destroys and moves away), so capacity
// is freed before it is taken. Moves that would wait for each other (a swap) are broken by
// stopping one of them first (move-cycles.ts).

import { ENGINE_CAPABILITIES } from '../model/engine-capabilities.js';
import {
  DEFAULT_ROLLOUT,
  type FailoverPriority,
  type Fleet,
  type Image,
  type InstanceGroup,
  type PackageVersions,
  type PatchBaseline,
  type PatchWindow,
} from '../model/fleet.js';
import { byInstanceName, type ObservedInstance, type ObservedState } from '../model/observed.js';
import type { Placement, PlacementEntry } from '../model/placement.js';
import {
  ACTION_KINDS,
  type ActionKind,
  PLAN_FORMAT_VERSION,
  type Plan,
  type PlanAction,
  type PlanImage,
} from '../model/plan.js';
import {
  dpkgArch,
  evaluateBaseline,
  memoizedCompare,
  packagesToRaise,
} from '../patching/baseline.js';
import { windowAt } from '../patching/patch-window.js';
import { licenseChanges } from './license-changes.js';
import { liveMoves } from './live-moves.js';
import { breakMoveCycles } from './move-cycles.js';

export interface PlanMeta {
  readonly id: string;
  readonly specHash: string;
  /**
   * The time the plan is made at, for patch windows (habit 5: the clock comes in): a patch
   * outside its window is marked `deferredUntil`. Absent: none is marked (apply still checks).
   */
  readonly nowMs?: number;
}

/** Why an observed instance the placement does not hold is destroyed, for the plan's reason. */
export type DestroyReason = (before: ObservedInstance, group: InstanceGroup | undefined) => string;

const NO_LONGER_WANTED: DestroyReason = (_, group) =>
  group ? 'replica no longer wanted' : 'group removed from the spec';

/**
 * `whyDestroy` words the destroys (what the placement no longer holds); a destroy plan
 * (destroy-plan.ts) passes an empty placement and its own reason.
 */
export function makePlan(
  fleet: Fleet,
  placement: Placement,
  observed: ObservedState,
  meta: PlanMeta,
  whyDestroy: DestroyReason = NO_LONGER_WANTED,
): Plan {
  const groupByName = new Map(fleet.groups.map((g) => [g.name, g]));
  const imageByName = new Map(fleet.images.map((i) => [i.name, i]));
  const seen = byInstanceName(observed.instances);
  const unplaceable = new Set(placement.unplaceable.map((u) => u.instance));
  const down = new Set(fleet.hosts.filter((h) => h.down).map((h) => h.name));
  const drafts: Array<Omit<PlanAction, 'dependsOn'>> = [];
  // The newest generation known for a name: the state's, or a host's fence if that is newer (a
  // destroyed instance's tombstone, or a state that was lost): a host refuses anything older.
  const generationOf = (name: string, before: ObservedInstance | undefined) =>
    Math.max(before?.generation ?? 0, observed.fences?.[name] ?? 0);

  const draft = (
    kind: ActionKind,
    desired: PlacementEntry,
    group: InstanceGroup,
    before: ObservedInstance | undefined,
    reason: string,
    generation = generationOf(desired.instance, before) + 1,
  ) => {
    const image = imageByName.get(group.image);
    // A create with an instance before it is a restart off a host that is down: the host it
    // left is its home (kept through a second restart); back there, it has none.
    const restart = kind === 'create' && before !== undefined;
    const home = restart ? (before.homeHost ?? before.host) : before?.homeHost;
    const made: Omit<PlanAction, 'dependsOn'> = {
      id: `${desired.instance}.${kind}`,
      kind,
      instance: desired.instance,
      group: group.name,
      host: desired.host,
      fromHost: kind === 'move' || restart ? (before?.host ?? null) : null,
      generation,
      image: image?.name ?? group.image,
      resources: group.resources,
      failoverHost: desired.failoverHost,
      reason,
      ...(home !== undefined && home !== desired.host ? { homeHost: home } : {}),
    };
    drafts.push(made);
    return made;
  };

  // Observed instances the placement holds (placed or unplaceable): when that is all of them,
  // none is to be destroyed (a placement names each replica once).
  let held = 0;
  for (const u of placement.unplaceable) if (seen.has(u.instance)) held++;
  const { befores, held: placed } = diffPlacements(
    placement.placements,
    { seen, groupByName, missing: observed.missing, down },
    draft,
  );
  held += placed;
  const desiredNames =
    held === observed.instances.length
      ? undefined
      : new Set(placement.placements.map((p) => p.instance));
  for (const before of desiredNames ? observed.instances : []) {
    if (desiredNames?.has(before.instance) || unplaceable.has(before.instance)) continue;
    drafts.push({
      id: `${before.instance}.destroy`,
      kind: 'destroy',
      instance: before.instance,
      group: before.group,
      host: before.host,
      fromHost: null,
      generation: generationOf(before.instance, before) + 1,
      image: before.image,
      resources: before.resources,
      failoverHost: null,
      reason: whyDestroy(before, groupByName.get(before.group)),
    });
  }

  // Second copies of an instance (a superseded job's create, a write lost with Redis): removed
  // from their host, above everything known of the name, while the state's copy stays.
  for (const stray of observed.strays ?? []) {
    const record = seen.get(stray.instance);
    const group = groupByName.get(record?.group ?? '');
    drafts.push({
      id: `${stray.instance}.destroy-stray-${stray.host}`,
      kind: 'destroy',
      instance: stray.instance,
      group: record?.group ?? group?.name ?? '',
      host: stray.host,
      fromHost: null,
      generation: Math.max(generationOf(stray.instance, record), stray.generation) + 1,
      image: record?.image ?? '',
      resources: record?.resources ?? { vcpus: 0, memoryMiB: 0, diskGiB: 0 },
      failoverHost: null,
      reason: `a second copy (the state has it on ${record?.host ?? 'another host'})`,
      stray: true,
    });
  }

  // What leaves a host, by host: landings wait for them.
  const leaving = new Map<string, string[]>();
  for (const a of drafts) {
    const from = a.kind === 'destroy' ? a.host : a.kind === 'move' ? a.fromHost : null;
    if (from === null) continue;
    const list = leaving.get(from) ?? [];
    list.push(a.id);
    leaving.set(from, list);
  }
  const landsOnHost = new Set<ActionKind>(['create', 'move', 'update']);
  const order = new Map(ACTION_KINDS.map((k, i) => [k, i]));
  // Each draft gets its dependencies in place, last (as a copy `{ ...draft, dependsOn }` had
  // them): V8 gave every such copy a hidden class of its own, ~300 bytes more per action, and an
  // apply holds its plan's 100,000 actions to the end.
  for (const a of drafts as Array<{ -readonly [K in keyof PlanAction]: PlanAction[K] }>) {
    a.dependsOn = landsOnHost.has(a.kind)
      ? (leaving.get(a.host) ?? []).filter((id) => id !== a.id)
      : [];
  }
  const actions: PlanAction[] = liveMoves(
    breakMoveCycles(drafts as PlanAction[]),
    fleet,
    observed,
  ).sort((a, b) => (order.get(a.kind) as number) - (order.get(b.kind) as number));

  actions.push(...patchActions(fleet, placement, befores, actions, generationOf, meta.nowMs));
  const count = (...kinds: ActionKind[]) => actions.filter((a) => kinds.includes(a.kind)).length;
  return {
    formatVersion: PLAN_FORMAT_VERSION,
    id: meta.id,
    fleet: fleet.name,
    specHash: meta.specHash,
    stateVersion: observed.version,
    actions,
    images: imagesOf(fleet, actions),
    unplaceable: placement.unplaceable,
    licenses: licenseChanges(fleet, placement, observed),
    failover: placement.failover,
    summary: {
      create: count('create'),
      move: count('move'),
      update: count('update', 'start', 'retarget'),
      patch: count('patch'),
      destroy: count('destroy'),
    },
  };
}

/**
 * Patch actions for the placed instances that will be below their baseline: as the host reports
 * them, or, for what this plan creates or recreates, as their image is. Each waits for the
 * instance's own action, and the replicas of a group are patched in batches of its
 * `maxUnavailable` (a rolling patch): every patch of batch n+1 waits for every patch of batch n,
 * so no more than that many replicas of a group are being patched at once. A patch outside its
 * group's window (at `nowMs`) is marked deferred until the window next opens.
 */
function patchActions(
  fleet: Fleet,
  placement: Placement,
  befores: ReadonlyArray<ObservedInstance | undefined>,
  actions: readonly PlanAction[],
  generationOf: (name: string, before: ObservedInstance | undefined) => number,
  nowMs: number | undefined,
): PlanAction[] {
  const groups = new Map(fleet.groups.map((g) => [g.name, g]));
  const images = new Map(fleet.images.map((i) => [i.name, i]));
  const baselines = new Map(fleet.patchBaselines.map((b) => [b.name, b]));
  const own = new Map(actions.filter((a) => a.kind !== 'destroy').map((a) => [a.instance, a]));
  // Only engines that can raise versions in an instance of the kind get patch jobs
  // (model/engine-capabilities.ts: real hosts patch sandboxes, not VMs yet); elsewhere the audit
  // reports what is below its baseline, and no job is planned that would only fail.
  const patchable = new Map(
    fleet.hosts.map((h) => [h.name, ENGINE_CAPABILITIES[h.engine]] as const),
  );
  // Per group, its rollout so far: the batch being filled, the one before, their number.
  const rollouts = new Map<
    string,
    { batch: number; current: string[]; previous: readonly string[] }
  >();
  // Per window, whether it is open at nowMs and when it next opens: one answer per window.
  const deferrals = new Map<PatchWindow, string | null>();
  const deferral = (window: PatchWindow | undefined): string | null => {
    if (window === undefined || nowMs === undefined) return null;
    let until = deferrals.get(window);
    if (until === undefined) {
      const state = windowAt(window, nowMs);
      until = state.open
        ? null
        : state.opensAt === null
          ? 'never'
          : new Date(state.opensAt).toISOString();
      deferrals.set(window, until);
    }
    return until;
  };
  const compare = memoizedCompare();
  type Verdict = { raise: PackageVersions; changes: string[] } | null;
  const verdicts = new Map<string, Verdict>();
  // The state shares one package object among the instances that report the same versions
  // (state/fleet-state.ts), and fresh ones share their image's: per group, a verdict per object.
  const byObject = new Map<InstanceGroup, Map<PackageVersions, Verdict>>();
  const patches: PlanAction[] = [];
  // Placements come in spec order (group by group, replicas in order): the chain follows it.
  // The group's baseline, image and verdicts are looked up once per run of its placements.
  let ofName: string | undefined;
  let ofGroup: InstanceGroup | undefined;
  let ofBaseline: PatchBaseline | undefined;
  let ofImage: Image | undefined;
  let ofVerdicts = new Map<PackageVersions, Verdict>();
  const placements = placement.placements;
  for (let k = 0; k < placements.length; k++) {
    const desired = placements[k] as PlacementEntry;
    if (desired.group !== ofName) {
      ofName = desired.group;
      ofGroup = groups.get(desired.group);
      ofBaseline =
        ofGroup?.patchBaseline === undefined ? undefined : baselines.get(ofGroup.patchBaseline);
      ofImage = ofGroup ? images.get(ofGroup.image) : undefined;
      if (ofGroup) {
        ofVerdicts = byObject.get(ofGroup) ?? new Map();
        byObject.set(ofGroup, ofVerdicts);
      }
    }
    const group = ofGroup;
    const baseline = ofBaseline;
    const image = ofImage;
    if (!group || !baseline || !image) continue;
    const engine = patchable.get(desired.host);
    if (!engine?.patch.includes(image.kind)) continue;
    // A VM on a real host is patched from inside its guest, which needs the image's way in.
    if (image.kind === 'vm' && engine.patchesVmsInGuest && image.guest === undefined) continue;
    const before = befores[k];
    const prior = own.size === 0 ? undefined : own.get(desired.instance);
    const fresh = prior === undefined ? false : prior.kind === 'create' || prior.kind === 'update';
    const installed: PackageVersions =
      fresh || before?.packages === undefined ? image.packages : before.packages;
    let verdict = ofVerdicts.get(installed);
    if (verdict === undefined) {
      // Instances of one image mostly share their versions of the baseline's packages: the
      // verdict is memoized by those versions, so 100,000 instances cost a few evaluations.
      const signature = `${baseline.name}\u0000${image.name}\u0000${Object.keys(baseline.minimum)
        .map((name) => installed[name] ?? installed[`${name}:${dpkgArch(image.os.arch)}`] ?? '')
        .join('\u0000')}`;
      verdict = verdicts.get(signature);
      if (verdict === undefined) {
        const result = evaluateBaseline(baseline, image.os, installed, compare);
        verdict = !result.applicable
          ? null
          : {
              raise: packagesToRaise(result.packages),
              changes: result.packages
                .filter((p) => p.status !== 'compliant')
                .map((p) => `${p.package} ${p.installed ?? 'missing'} → ${p.required}`),
            };
        verdicts.set(signature, verdict);
      }
      ofVerdicts.set(installed, verdict);
    }
    if (verdict === null || verdict.changes.length === 0) continue;
    const { raise, changes } = verdict;
    const id = `${desired.instance}.patch`;
    const policy = group.patch ?? DEFAULT_ROLLOUT;
    let rollout = rollouts.get(group.name);
    if (rollout === undefined) {
      rollout = { batch: 1, current: [], previous: [] };
      rollouts.set(group.name, rollout);
    } else if (rollout.current.length >= policy.maxUnavailable) {
      rollout.previous = rollout.current;
      rollout.current = [];
      rollout.batch++;
    }
    rollout.current.push(id);
    const until = deferral(group.patchWindow);
    // Installed names (`libc6:amd64` for a baseline's `libc6`) whose entry asks for a restart.
    const reboot = baseline.reboot
      ? Object.keys(raise).filter((name) => baseline.reboot?.includes(name.split(':')[0] ?? ''))
      : undefined;
    patches.push({
      id,
      kind: 'patch',
      instance: desired.instance,
      group: group.name,
      host: desired.host,
      fromHost: null,
      generation: (prior?.generation ?? generationOf(desired.instance, before)) + 1,
      image: image.name,
      resources: group.resources,
      failoverHost: desired.failoverHost,
      dependsOn: [...(prior ? [prior.id] : []), ...rollout.previous],
      reason: `${changes.join(', ')} (baseline ${baseline.name})`,
      packages: raise,
      batch: rollout.batch,
      ...(group.patchWindow === undefined ? {} : { window: group.patchWindow }),
      ...(until === null ? {} : { deferredUntil: until }),
      ...(reboot !== undefined && reboot.length > 0 ? { reboot } : {}),
      ...(policy.onFailure === 'rollback' ? { rollback: true as const } : {}),
    });
  }
  return patches;
}

type Draft = (
  kind: ActionKind,
  desired: PlacementEntry,
  group: InstanceGroup,
  before: ObservedInstance | undefined,
  reason: string,
  generation?: number,
) => Omit<PlanAction, 'dependsOn'>;

/**
 * The actions that take each placement's observed instance (if any) to it: created, restarted,
 * moved, updated, started or retargeted. Returns each placement's observed instance, for the
 * patch pass too (one lookup per name), and how many there are. (A function of its own, so that
 * V8 compiles its loop over 100,000 placements early: inside makePlan most of it ran uncompiled.)
 */
function diffPlacements(
  placements: readonly PlacementEntry[],
  known: {
    readonly seen: ReadonlyMap<string, ObservedInstance>;
    readonly groupByName: ReadonlyMap<string, InstanceGroup>;
    readonly missing: Readonly<Record<string, string>> | undefined;
    readonly down: ReadonlySet<string>;
  },
  draft: Draft,
): { readonly befores: Array<ObservedInstance | undefined>; readonly held: number } {
  const { seen, groupByName, missing, down } = known;
  const befores: Array<ObservedInstance | undefined> = [];
  let held = 0;
  let group: InstanceGroup | undefined;
  for (const desired of placements) {
    const before = seen.get(desired.instance);
    befores.push(before);
    if (before) held++;
    // Placements come group by group: its group looked up once per run.
    if (desired.group !== group?.name) group = groupByName.get(desired.group);
    if (!group) continue;
    if (!before) {
      const gone = missing?.[desired.instance];
      draft(
        'create',
        desired,
        group,
        undefined,
        gone === undefined ? 'new replica' : `missing from ${gone}, created again`,
      );
    } else if (before.host !== desired.host && down.has(before.host)) {
      // Its host is down (lost past the restart point, or fenced): nothing can be asked of it,
      // so the instance is created on its new host above its generation — the host's own copy,
      // stopped by its watchdog, is destroyed when it returns (a stray, or by its agent).
      const made = draft('create', desired, group, before, `restart: ${before.host} is down`);
      (made as { priority?: FailoverPriority }).priority = group.failoverPriority;
    } else if (before.host !== desired.host) {
      const failback = before.homeHost === desired.host ? ' (failback: its host is back)' : '';
      draft('move', desired, group, before, `from ${before.host} to ${desired.host}${failback}`);
    } else {
      const changes = differences(before, group);
      const failover =
        before.failoverHost === desired.failoverHost
          ? null
          : `failover host ${before.failoverHost ?? 'none'} → ${desired.failoverHost ?? 'none'}`;
      if (changes.length > 0) {
        draft('update', desired, group, before, [...changes, failover ?? []].flat().join(', '));
      } else if (before.status !== 'running') {
        // Starting records the desired failover host too.
        draft('start', desired, group, before, `${before.status}, should be running`);
      } else if (failover !== null) {
        // Only the standby reservation moved: nothing to do on the host, so the generation stays
        // (the host sees no call to fence) and the instance keeps running.
        draft('retarget', desired, group, before, failover, before.generation);
      }
    }
  }
  return { befores, held };
}

const NONE: readonly string[] = [];

/** What differs between an instance and its group that only recreating the instance changes. */
function differences(before: ObservedInstance, group: InstanceGroup): readonly string[] {
  const r0 = group.resources;
  const same =
    before.image === group.image &&
    before.resources.vcpus === r0.vcpus &&
    before.resources.memoryMiB === r0.memoryMiB &&
    before.resources.diskGiB === r0.diskGiB;
  if (same) return NONE; // the common case, without an array per instance
  const changes: string[] = [];
  if (before.image !== group.image) changes.push(`image ${before.image} → ${group.image}`);
  const r = group.resources;
  if (before.resources.vcpus !== r.vcpus)
    changes.push(`vcpus ${before.resources.vcpus} → ${r.vcpus}`);
  if (before.resources.memoryMiB !== r.memoryMiB) {
    changes.push(`memoryMiB ${before.resources.memoryMiB} → ${r.memoryMiB}`);
  }
  if (before.resources.diskGiB !== r.diskGiB)
    changes.push(`diskGiB ${before.resources.diskGiB} → ${r.diskGiB}`);
  return changes;
}

/** The images the actions create instances from, as apply needs them (a saved plan carries them). */
function imagesOf(fleet: Fleet, actions: readonly PlanAction[]): Record<string, PlanImage> {
  const used = new Set(actions.filter((a) => a.kind !== 'destroy').map((a) => a.image));
  const images: Record<string, PlanImage> = {};
  for (const image of fleet.images) {
    if (!used.has(image.name)) continue;
    images[image.name] = {
      name: image.name,
      kind: image.kind,
      os: image.os,
      packages: image.packages,
      ...(image.source === undefined ? {} : { source: image.source }),
      ...(image.kind === 'container' ? { command: image.command } : {}),
      ...(image.kind === 'vm' && image.guest !== undefined ? { guest: image.guest } : {}),
    };
  }
  return images;
}
