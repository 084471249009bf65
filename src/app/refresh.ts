// Refresh, as Terraform refreshes before a plan: the state as recorded, corrected by what the
// hosts themselves report. An instance a host runs that the state does not know (created by an
// apply that died before recording it) is adopted, so no plan creates it a second time
// elsewhere; one the state has that its answering host no longer runs is `missing`; one it runs
// stopped is `stopped`; a second copy on another host is a `stray`. A host that does not answer
// keeps the state's word. With `persist` (apply, under its lock) adoptions and removals are
// written to the state.

import type { HostListing } from '../engines/engine-set.js';
import { type InstanceGroup, replicaIndexIn, replicaOf } from '../model/fleet.js';
import {
  observedFromRecorded,
  type RecordedInstance,
  recordedFromReported,
} from '../model/instances.js';
import { byInstanceName, type ObservedInstance, type ObservedState } from '../model/observed.js';
import type { FleetSession } from './session.js';

export async function refresh(
  session: FleetSession,
  options: { readonly persist: boolean },
): Promise<ObservedState> {
  return (await refreshDeferringFences(session, options)).withFences();
}

/** What refresh found, and the fences it reads only when asked for them. */
export interface Refreshed {
  /** The observed state without the hosts' fences. */
  readonly observed: ObservedState;
  /**
   * The same with the fences newer than the state (`ObservedState.fences`), read from the hosts
   * when first asked for, and only when the spec wants an instance the state does not have.
   * They change only the generations of a plan's actions, never which actions it has, so a plan
   * that has none need not read them (app/plan.ts): on 100,000 instances, 100,000 fences.
   */
  withFences(): Promise<ObservedState>;
}

export async function refreshDeferringFences(
  session: FleetSession,
  options: { readonly persist: boolean },
): Promise<Refreshed> {
  const { state, engines } = session;
  const persist = options.persist;
  // The state's reply first (a plan may have sent the read before its spec was parsed:
  // session.ts, prefetchState), then every host's listing, so that Redis runs the listings'
  // script while this process decodes the state: asked for together, the script ran before
  // Redis sent the rest of the state's megabytes, and this process waited for both.
  const reply = await ((persist ? undefined : session.takePrefetchedState()) ?? state.fetch());
  const surveying = engines.survey();
  surveying.catch(() => undefined); // awaited below, unless decoding the state throws first
  const read = await state.decode(reply);
  const survey = await surveying;
  let snapshot = read;
  const recorded = byInstanceName(read.instances);

  // A host that lists only records of its own (names being unique) lists nothing the state
  // lacks and nothing it has elsewhere: the passes over every listed name below skip it, which
  // on a converged fleet is every host.
  const unique = recorded.size === read.instances.length;
  const own = ownListed(survey.listings, recorded);
  const settled = (listing: HostListing | null) =>
    unique && listing !== null && own.get(listing) === listing.list.length;
  const { missing, stopped } = againstListings(read.instances, survey.listings, unique, own);

  // Adoption: each name no record has, from the first host (in spec order) that lists it.
  const unknown: Array<{ host: string; name: string }> = [];
  const seen = new Set<string>();
  for (const [host, listing] of survey.listings) {
    if (settled(listing)) continue;
    for (const name of listing?.list ?? []) {
      if (recorded.has(name) || seen.has(name)) continue;
      seen.add(name);
      unknown.push({ host, name });
    }
  }
  const adopted: RecordedInstance[] = [];
  for (const { host, reported } of await survey.describe(unknown)) {
    const record = recordedFromReported(host, reported);
    adopted.push(record);
    if (persist) await state.putInstance(record);
  }

  if (persist) {
    for (const name of Object.keys(missing)) await state.deleteInstance(name);
  }
  if (persist && (adopted.length > 0 || Object.keys(missing).length > 0)) {
    snapshot = await state.readAll();
  }
  // Unwritten adoptions are planned as the old refresh had them: packages not yet reported.
  const listed =
    persist || adopted.length === 0
      ? snapshot.instances
      : [...snapshot.instances, ...adopted.map(observedFromRecorded)];
  const current =
    Object.keys(missing).length === 0 && stopped.size === 0
      ? listed
      : listed
          .filter((i) => missing[i.instance] === undefined)
          .map((i) => (stopped.has(i.instance) ? { ...i, status: 'stopped' as const } : i));

  // Second copies: a host runs an instance the state (or the adoption above) has elsewhere.
  const adoptedOwner = new Map<string, string>();
  for (const a of adopted) if (!adoptedOwner.has(a.instance)) adoptedOwner.set(a.instance, a.host);
  const owners = byInstanceName(snapshot.instances);
  const elsewhere: Array<{ host: string; name: string }> = [];
  for (const [host, listing] of survey.listings) {
    if (snapshot === read && settled(listing)) continue; // every name its own host's
    for (const name of listing?.list ?? []) {
      const owner = owners.get(name)?.host ?? adoptedOwner.get(name);
      if (owner !== undefined && owner !== host && missing[name] === undefined) {
        elsewhere.push({ host, name });
      }
    }
  }
  const strays = (await survey.describe(elsewhere)).map(({ host, reported }) => ({
    instance: reported.instance,
    host,
    generation: reported.generation,
  }));
  const unanswered = [...survey.listings].filter(([, l]) => l === null).map(([host]) => host);
  const observed: ObservedState = {
    version: snapshot.version,
    ...(unanswered.length > 0 ? { unanswered } : {}),
    instances: current,
    ...(Object.keys(missing).length > 0 ? { missing } : {}),
    ...(strays.length > 0 ? { strays } : {}),
  };
  let withFences: Promise<ObservedState> | undefined;
  return {
    observed,
    withFences() {
      withFences ??= fencesAbove(session, observed, () => engines.prefetchFences()).then((above) =>
        above ? { ...observed, fences: above } : observed,
      );
      return withFences;
    },
  };
}

/**
 * Per listing, how many of its names are records of its own host: with names unique, a host
 * whose every name is (as many as it lists) holds only what the state has there.
 */
function ownListed(
  listings: ReadonlyMap<string, HostListing | null>,
  recorded: ReadonlyMap<string, RecordedInstance>,
): Map<HostListing, number> {
  const own = new Map<HostListing, number>();
  for (const [host, listing] of listings) {
    if (listing === null) continue;
    let n = 0;
    for (const name of listing.list) if (recorded.get(name)?.host === host) n++;
    own.set(listing, n);
  }
  return own;
}

/**
 * What the state has that its host, answering, no longer runs (or runs stopped). Where names
 * are unique and a host lists as many of its own records as the state has there, it lists them
 * all, and its listing is not looked into (a set of every host's names cost more than the rest
 * of refresh). A function of its own, so that V8 compiles its loop over every record early:
 * inside refresh most of it ran uncompiled.
 */
function againstListings(
  records: readonly RecordedInstance[],
  listings: ReadonlyMap<string, HostListing | null>,
  unique: boolean,
  own: ReadonlyMap<HostListing, number>,
): { readonly missing: Record<string, string>; readonly stopped: Set<string> } {
  const onHost = new Map<string, number>();
  if (unique) for (const r of records) onHost.set(r.host, (onHost.get(r.host) ?? 0) + 1);
  const missing: Record<string, string> = {};
  const stopped = new Set<string>();
  for (const record of records) {
    const listing = listings.get(record.host);
    if (!listing) continue; // not in the spec (refused later), or not answering
    const all = unique && own.get(listing) === onHost.get(record.host);
    if (!all && !listing.names.has(record.instance)) missing[record.instance] = record.host;
    else if (listing.status?.get(record.instance) === 'stopped' && record.status === 'running')
      stopped.add(record.instance);
  }
  return { missing, stopped };
}

/**
 * When the spec wants an instance the state does not have, the hosts' fences newer than the
 * state: a destroyed instance's tombstone outlives its record, and a create below it would be
 * refused for ever. A host that does not answer is skipped.
 */
async function fencesAbove(
  session: FleetSession,
  observed: ObservedState,
  fences: () => (visit: (name: string, generation: number) => void) => Promise<void>,
): Promise<Record<string, number> | undefined> {
  const known = byInstanceName(observed.instances);
  if (!wantsUnknown(session.fleet.groups, known)) return undefined;
  const above: Record<string, number> = {};
  await fences()((name, generation) => {
    if (generation > (known.get(name)?.generation ?? 0) && generation > (above[name] ?? 0)) {
      above[name] = generation;
    }
  });
  return Object.keys(above).length > 0 ? above : undefined;
}

/**
 * Whether some replica of the spec's groups has no instance in `known`. Counted from the known
 * names rather than by making every replica's name and looking it up (100,000 names made and
 * hashed): each name is the replica `replicaOf` says or none (it is the exact inverse of
 * `replicaName`), and the names are distinct, so every replica is known exactly when the known
 * replicas number as many as the groups want.
 */
function wantsUnknown(
  groups: readonly InstanceGroup[],
  known: ReadonlyMap<string, ObservedInstance>,
): boolean {
  const replicas = new Map(groups.map((g) => [g.name, g.replicas]));
  let missing = 0;
  for (const g of groups) missing += g.replicas;
  if (known.size < missing) return true;
  let counted = '';
  let wanted = 0;
  for (const [name, instance] of known) {
    // The record's group is the name's in all but odd cases (then replicaOf says which it is).
    let group = instance.group;
    let index = replicaIndexIn(name, group);
    if (index < 0) {
      const r = replicaOf(name);
      if (r === undefined) continue;
      group = r.group;
      index = r.index;
    }
    // Names of one group mostly follow one another: its count is looked up once per run.
    if (group !== counted) {
      counted = group;
      wanted = replicas.get(group) ?? 0;
    }
    if (index < wanted) missing--;
  }
  return missing > 0;
}
