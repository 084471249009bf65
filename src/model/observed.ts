// What is, as the state store last saw it: the other input of `plan` besides the spec.

import type { PackageVersions, Resources } from './fleet.js';

export type InstanceStatus = 'created' | 'running' | 'stopped' | 'failed';

export interface ObservedInstance {
  readonly instance: string;
  readonly group: string;
  readonly host: string;
  /** Grows with every action on the instance; a host refuses an older one (fencing). */
  readonly generation: number;
  readonly status: InstanceStatus;
  readonly image: string;
  readonly resources: Resources;
  readonly failoverHost: string | null;
  /**
   * Where it ran before the controller restarted it elsewhere (its host went down): with
   * `spec.failover.failback: auto` it moves back once that host is up. Absent: never restarted
   * away (or moved since).
   */
  readonly homeHost?: string;
  /** The installed packages as the host last reported them; absent: not reported (the image's). */
  readonly packages?: PackageVersions;
}

export interface ObservedState extends Unanswered {
  /** The state's version: every mutation increments it, so a saved plan knows if it is stale. */
  readonly version: number;
  readonly instances: readonly ObservedInstance[];
  /**
   * Per instance name, the newest generation a host has fenced — destroyed instances'
   * tombstones included — where newer than the state knows or the state has no record: plans go
   * above it. Read from the hosts when something is to be created; absent otherwise.
   */
  readonly fences?: Readonly<Record<string, number>>;
  /**
   * Instances the state had on a host that answered without them (gone since the last apply:
   * deleted, crashed, the host rebuilt), name → that host. They are not in `instances`: the
   * plan creates them again.
   */
  readonly missing?: Readonly<Record<string, string>>;
  /**
   * Second copies: an instance a host runs while the state (or, for one the state does not know,
   * the host adopted first) has it on another host — left by a job of a superseded plan, or a
   * write lost with Redis. The plan removes them; the state's copy stays.
   */
  readonly strays?: ReadonlyArray<{
    readonly instance: string;
    readonly host: string;
    readonly generation: number;
  }>;
}

/** The hosts that did not answer refresh (their instances are the state's word, unconfirmed). */
export interface Unanswered {
  readonly unanswered?: readonly string[];
}

export const EMPTY_STATE: ObservedState = { version: 0, instances: [] };

const indexes = new WeakMap<
  readonly { readonly instance: string }[],
  ReadonlyMap<string, unknown>
>();

/**
 * The instances by name (the last of a name wins), built once per array: refresh, the planner
 * and the fence check all look instances up by name, and on 100,000 instances building the map
 * costs more than every lookup in it. The arrays are never changed once read (readonly), so the
 * map stays true for as long as the array lives.
 */
export function byInstanceName<T extends { readonly instance: string }>(
  instances: readonly T[],
): ReadonlyMap<string, T> {
  let index = indexes.get(instances) as ReadonlyMap<string, T> | undefined;
  if (index === undefined) {
    const map = new Map<string, T>();
    for (const i of instances) map.set(i.instance, i);
    indexes.set(instances, map);
    index = map;
  }
  return index;
}
