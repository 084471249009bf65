// Refresh, as Terraform refreshes before a plan: the state as recorded, corrected by what the
// hosts themselves report. An instance a host runs that the state does not know (created by an
// apply that died before recording it) is adopted, so no plan creates it a second time
// elsewhere; one the state has that its answering host no longer runs is `missing`; one it runs
// stopped is `stopped`; a second copy on another host is a `stray`. A host that does not answer
// keeps the state's word. With `persist` (apply, under its lock) adoptions and removals are
// written to the state.

import { replicaName } from '../model/fleet.js';
import {
  observedFromRecorded,
  type RecordedInstance,
  recordedFromReported,
} from '../model/instances.js';
import type { ObservedState } from '../model/observed.js';
import type { FleetSession } from './session.js';

export async function refresh(
  session: FleetSession,
  options: { readonly persist: boolean },
): Promise<ObservedState> {
  const { state, engines } = session;
  const persist = options.persist;
  let snapshot = await state.readAll();
  const survey = await engines.survey();
  const known = new Set(snapshot.instances.map((i) => i.instance));

  // Adoption: each name no record has, from the first host (in spec order) that lists it.
  const unknown: Array<{ host: string; name: string }> = [];
  const seen = new Set(known);
  for (const [host, listing] of survey.listings) {
    for (const name of listing?.names ?? []) {
      if (seen.has(name)) continue;
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

  // What the state has that its host, answering, no longer runs (or runs stopped).
  const missing: Record<string, string> = {};
  const stopped = new Set<string>();
  for (const record of snapshot.instances) {
    const listing = survey.listings.get(record.host);
    if (!listing) continue; // not in the spec (refused later), or not answering
    if (!listing.names.has(record.instance)) missing[record.instance] = record.host;
    else if (listing.status?.get(record.instance) === 'stopped' && record.status === 'running') {
      stopped.add(record.instance);
    }
  }
  if (persist) {
    for (const name of Object.keys(missing)) await state.deleteInstance(name);
  }
  if (persist && (adopted.length > 0 || Object.keys(missing).length > 0)) {
    snapshot = await state.readAll();
  }
  // Unwritten adoptions are planned as the old refresh had them: packages not yet reported.
  const listed = persist
    ? snapshot.instances
    : [...snapshot.instances, ...adopted.map(observedFromRecorded)];
  const current =
    Object.keys(missing).length === 0 && stopped.size === 0
      ? listed
      : listed
          .filter((i) => missing[i.instance] === undefined)
          .map((i) => (stopped.has(i.instance) ? { ...i, status: 'stopped' as const } : i));

  // Second copies: a host runs an instance the state (or the adoption above) has elsewhere.
  const ownerOf = new Map(snapshot.instances.map((i) => [i.instance, i.host]));
  for (const a of adopted) if (!ownerOf.has(a.instance)) ownerOf.set(a.instance, a.host);
  const elsewhere: Array<{ host: string; name: string }> = [];
  for (const [host, listing] of survey.listings) {
    for (const name of listing?.names ?? []) {
      const owner = ownerOf.get(name);
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
  const observed: ObservedState = {
    version: snapshot.version,
    instances: current,
    ...(Object.keys(missing).length > 0 ? { missing } : {}),
    ...(strays.length > 0 ? { strays } : {}),
  };
  const fences = await fencesAbove(session, observed);
  return fences ? { ...observed, fences } : observed;
}

/**
 * When the spec wants an instance the state does not have, the hosts' fences newer than the
 * state: a destroyed instance's tombstone outlives its record, and a create below it would be
 * refused for ever. A host that does not answer is skipped.
 */
async function fencesAbove(
  session: FleetSession,
  observed: ObservedState,
): Promise<Record<string, number> | undefined> {
  const { fleet, engines } = session;
  const known = new Map(observed.instances.map((i) => [i.instance, i.generation]));
  const wanted = fleet.groups.some((g) => {
    for (let i = 0; i < g.replicas; i++) if (!known.has(replicaName(g.name, i))) return true;
    return false;
  });
  if (!wanted) return undefined;
  const each = await Promise.all(
    fleet.hosts.map((h) =>
      engines
        .engine(h.name)
        .fences()
        .catch(() => new Map<string, number>()),
    ),
  );
  const above: Record<string, number> = {};
  for (const fences of each) {
    for (const [name, generation] of fences) {
      if (generation > (known.get(name) ?? 0) && generation > (above[name] ?? 0)) {
        above[name] = generation;
      }
    }
  }
  return Object.keys(above).length > 0 ? above : undefined;
}
