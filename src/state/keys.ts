// The Redis key layout of a fleet: the one place key names are made (docs/architecture.md "Queue, state and
// engines"). Everything else asks these builders; nobody concatenates a key by hand.
//
// Every key of fleet F starts with `vfleet:{F}:`. The braces are a Redis Cluster hash tag: only
// `F` is hashed, so all of a fleet's keys live in one slot and a MULTI, a Lua script or a BullMQ
// flow may touch any of them together. Names are DNS labels (the spec's pattern), so a name can
// hold neither a brace (which would move the hash tag) nor a ':' (which would blur the layout).
//
//   vfleet:{F}:hosts          hash    host → JSON facts
//   vfleet:{F}:current-plan   string  the id of the plan apply is running; jobs of others are superseded
//   vfleet:{F}:heartbeats     hash    host → last heartbeat, epoch ms (the heartbeat's own clock)
//   vfleet:{F}:instances      hash    instance → record, a JSON array [instance, host, generation,
//                                     status, failoverHost, profile id, homeHost?]
//                                     (instance-records.ts; records of an unusual shape, and older
//                                     ones, are the JSON object, its `packages` a list's id or the
//                                     list itself)
//   vfleet:{F}:profiles       hash    profile id → JSON {group, image, resources, packages: list
//                                     id}: what the records of a group share, each distinct one once
//   vfleet:{F}:packages       hash    package-list id → JSON package list (package → version): each
//                                     distinct list once, content-addressed (instance-records.ts)
//   vfleet:{F}:version        string  integer; every state mutation INCRs it in the same MULTI,
//                                     a saved plan records it and apply refuses a stale one
//   vfleet:{F}:lock           string  JSON holder {id, pid, host, since}, with a TTL (PX)
//   vfleet:{F}:events         stream  one entry per action and outcome, XADD MAXLEN ~ 10000
//   vfleet:{F}:leases         hash    host → JSON {seq, at, by}: the host's lease, renewed by what
//                                     speaks for the host (the emulated agent, a host's agent)
//   vfleet:{F}:leader         string  JSON {id, token, pid, host, since}, with a TTL (PX): the
//                                     controller that acts (state/control-state.ts)
//   vfleet:{F}:leader-token   string  integer; INCR for every new leader: the fencing token its
//                                     jobs carry
//   vfleet:{F}:fenced         hash    host → JSON {at, by}: an operator asserted the host is off
//   vfleet:{F}:health         hash    host → JSON {health, leaseAgeMs, since, at}: the leader's
//                                     judgement of each host, for status and plan
//   vfleet:{F}:patches        hash    instance → JSON PatchStatus: its last patch as its host
//                                     reported it (outcome, reboot required), for the patch audit
//   vfleet:{F}:bull:…         BullMQ's keys (queuePrefix): queues `host.<host>`, jobs, flows
//   vfleet:{F}:engine:<host>:… the embedded engine's emulated hosts (engineHostKeys)
//
// Heartbeats are one hash rather than a key per host so that `readAll` reads them in the same
// round trip as everything else (it cannot GET keys whose host names it has not read yet), and
// they do not bump `version`: a heartbeat is liveness, not a change a plan was made against.

/** The spec's pattern for names (schemas/fleet.schema.json, definitions.name). */
const NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Events kept in the stream, approximately (`MAXLEN ~`): enough for an audit of recent applies. */
export const EVENTS_MAXLEN = 10_000;

export interface FleetKeys {
  /** `vfleet:{<fleet>}:`, with the trailing colon. */
  readonly prefix: string;
  readonly hosts: string;
  readonly heartbeats: string;
  readonly instances: string;
  /** Package-list id → the list as JSON: the lists instance records name by id. */
  readonly packages: string;
  /** Profile id → {group, image, resources, packages} as JSON: what compact records name. */
  readonly profiles: string;
  readonly version: string;
  readonly lock: string;
  /** The id of the plan apply is running: jobs of any other plan are superseded. */
  readonly currentPlan: string;
  readonly events: string;
  readonly leases: string;
  readonly leader: string;
  readonly leaderToken: string;
  readonly fenced: string;
  readonly health: string;
  /** The source revision the fleet was last brought to (model/source.ts). */
  readonly revision: string;
  /** The leader controller's sync status and health. */
  readonly sync: string;
  /** Set while the fleet's reconcile is suspended (`vfleet suspend`). */
  readonly suspended: string;
  /** Bumped by `vfleet reconcile --now`. */
  readonly reconcileRequest: string;
  /** Instance → its disk replication's status (model/replication.ts), written by the sync jobs. */
  readonly replication: string;
  /** Instance → its last patch as its host reported it (model/instances.ts PatchStatus). */
  readonly patches: string;
  /** `<prefix>replication-lock:<instance>`: one sync of an instance at a time. */
  readonly replicationLock: string;
  /** The hosts an operator drains (`vfleet host drain`), as if the spec said `drain: true`. */
  readonly drained: string;
}

/** One emulated host's keys (engines/embedded/embedded-engine.ts says what each holds). */
export interface EngineHostKeys {
  readonly instances: string;
  readonly fence: string;
  readonly disks: string;
  /** The replicas this host keeps of other hosts' VMs: instance → JSON ReplicaPoint + packages. */
  readonly replicas: string;
  /** Present while the host is under an injected fault: `failed` or `partitioned`. */
  readonly down: string;
  /** The emulated agent's own memory: lastOk (its last renewal), fencedAt, rejoin. */
  readonly agent: string;
  /** The names of the instances that are stopped: listed with the names, so refresh sees them. */
  readonly stopped: string;
  /** Injected patch faults: instance → the package whose install fails (embedded-engine.ts). */
  readonly patchFaults: string;
  /** The host's own patch: hash {level, at} (`vfleet host patch`, embedded-engine.ts). */
  readonly hostPatch: string;
}

/** Matches every fleet's lock key (SCAN MATCH: braces are literal in Redis's glob). */
export const ALL_FLEET_LOCKS = 'vfleet:{*}:lock';

/** The fleet a key matched by ALL_FLEET_LOCKS belongs to. */
export const fleetOfLockKey = (key: string): string =>
  key.slice('vfleet:{'.length, key.length - '}:lock'.length);

function checkName(kind: string, name: string): string {
  // A programming error, not a user's: names reach here only after the spec validated them.
  if (!NAME.test(name)) throw new TypeError(`not a valid ${kind} name for a Redis key: ${name}`);
  return name;
}

export function fleetKeys(fleet: string): FleetKeys {
  const prefix = `vfleet:{${checkName('fleet', fleet)}}:`;
  return {
    prefix,
    hosts: `${prefix}hosts`,
    heartbeats: `${prefix}heartbeats`,
    instances: `${prefix}instances`,
    packages: `${prefix}packages`,
    profiles: `${prefix}profiles`,
    version: `${prefix}version`,
    lock: `${prefix}lock`,
    currentPlan: `${prefix}current-plan`,
    events: `${prefix}events`,
    leases: `${prefix}leases`,
    leader: `${prefix}leader`,
    leaderToken: `${prefix}leader-token`,
    fenced: `${prefix}fenced`,
    health: `${prefix}health`,
    revision: `${prefix}revision`,
    sync: `${prefix}sync`,
    suspended: `${prefix}suspended`,
    reconcileRequest: `${prefix}reconcile-request`,
    replication: `${prefix}replication`,
    patches: `${prefix}patches`,
    replicationLock: `${prefix}replication-lock:`,
    drained: `${prefix}drained`,
  };
}

/**
 * BullMQ's `prefix` option for the fleet's queues. BullMQ makes `<prefix>:<queue>:<suffix>`
 * keys, so the fleet's hash tag leads every queue key and a flow across host queues is one slot.
 */
export function queuePrefix(fleet: string): string {
  return `${fleetKeys(fleet).prefix}bull`;
}

/** The embedded engine's keys for one emulated host. */
export function engineHostKeys(fleet: string, host: string): EngineHostKeys {
  const base = `${fleetKeys(fleet).prefix}engine:${checkName('host', host)}:`;
  return {
    instances: `${base}instances`,
    fence: `${base}fence`,
    disks: `${base}disks`,
    replicas: `${base}replicas`,
    down: `${base}down`,
    agent: `${base}agent`,
    stopped: `${base}stopped`,
    patchFaults: `${base}patch-faults`,
    hostPatch: `${base}host-patch`,
  };
}
