// The embedded emulator engine: hosts whose whole state lives in Redis, so any worker process
// sees the same hosts and the pipeline runs with nothing installed but Redis. Each instance goes
// created → running ⇄ stopped → destroyed, after a configurable boot latency, and reports its
// image's package inventory; `patch` raises versions. Faults are injected on purpose
// (`vfleet host fail|partition|recover`): a failed or partitioned host stops answering.
// Transitions run as one Lua script each, so fencing (refuse an older generation) and the state
// change are atomic: two workers racing on one job cannot both act.
//
// Keys (state/keys.ts, engineHostKeys: under the fleet's hash tag):
//   vfleet:{<fleet>}:engine:<host>:instances  hash  instance → JSON record (ReportedInstance; an
//                                             older vfleet's records say `name` for `instance`)
//   vfleet:{<fleet>}:engine:<host>:fence      hash  instance → newest generation seen (kept after destroy)
//   vfleet:{<fleet>}:engine:<host>:disks      hash  instance → JSON {from, generation, packages} (copied disks)
//   vfleet:{<fleet>}:engine:<host>:replicas   hash  instance → JSON {point, packages}: replicas of other hosts' VMs
//                                             (embedded-replication.ts)
//   vfleet:{<fleet>}:engine:<host>:down       string, present while the host is under a fault:
//                                             `failed` or `partitioned` (`1`, from an older vfleet: failed)
//   vfleet:{<fleet>}:engine:<host>:agent      hash  the emulated agent's memory: lastOk (its last
//                                             renewal, its own clock), fencedAt, rejoin
//   vfleet:{<fleet>}:engine:<host>:stopped    set   the instances that are stopped (kept by every
//                                             script that changes a status), listed with the names
//   vfleet:{<fleet>}:engine:<host>:host-patch hash {level, at}: the host's own patch (patchHost)
//
// The emulated agent (emulated-agent.ts) renews each host's lease, stops a partitioned host's
// instances a ttl after its last renewal, and has a returning host destroy its stale copies.

import { ENGINE_CAPABILITIES } from '../../model/engine-capabilities.js';
import { VfleetError } from '../../model/errors.js';
import type { Host, PackageVersions } from '../../model/fleet.js';
import type { PatchRecord } from '../../model/instances.js';
import { type EngineHostKeys, engineHostKeys } from '../../state/keys.js';
import { runScript } from '../../state/lua-script.js';
import type { RedisClient } from '../../state/redis-client.js';
import {
  checkCopyTarget,
  checkReplicaTarget,
  type DiskTransfer,
  type EngineInstance,
  type HostEngine,
  type HostFacts,
  type HostFault,
  type HostPatchLevel,
  type InjectedFault,
  type InstanceRequest,
  type PatchOptions,
  type ReplicaIncoming,
  type ReplicaPoint,
  type ReplicationResult,
} from '../host-engine.js';
import { migrateEmbedded } from './embedded-migration.js';
import {
  emulatedBytes,
  readReplica,
  receiveReplica,
  replicaPoints,
} from './embedded-replication.js';
import { TRANSITION } from './embedded-transition.js';

// KEYS: down, instances, agent, stopped. ARGV: fail | partition | recover. A failed host crashes: every
// instance it runs stops with it (a returning host does not resume them by itself). A partition
// leaves them running: the agent's watchdog stops them a ttl after its last renewal.
const INJECT = `
if ARGV[1] == 'recover' then redis.call('DEL', KEYS[1]) return 1 end
redis.call('HSET', KEYS[3], 'rejoin', '1')
if ARGV[1] == 'partition' then redis.call('SET', KEYS[1], 'partitioned') return 1 end
redis.call('SET', KEYS[1], 'failed')
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local rec = cjson.decode(all[i + 1])
  if rec.status ~= 'stopped' then
    rec.status = 'stopped'
    redis.call('HSET', KEYS[2], all[i], cjson.encode(rec))
  end
  redis.call('SADD', KEYS[4], all[i])
end
return 1
`;

export interface EmbeddedEngineOptions {
  /** How long an instance takes to boot, ms; small by default so CI stays fast. */
  readonly bootLatencyMs?: number;
  /** Injected so tests and benchmarks control time (habit 5, docs/architecture.md). */
  readonly sleep?: (ms: number) => Promise<void>;
  /**
   * The fleet's current-plan key (state/keys.ts): given, a create that names its plan is refused
   * in the same Lua step when that plan is no longer current.
   */
  readonly currentPlanKey?: string;
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class EmbeddedEngine implements HostEngine {
  readonly host: string;
  readonly engine = 'embedded' as const;
  readonly capabilities = ENGINE_CAPABILITIES.embedded;
  private readonly keys: EngineHostKeys;
  private readonly bootLatencyMs: number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly currentPlanKey: string | undefined;

  constructor(
    private readonly redis: RedisClient,
    fleet: string,
    private readonly spec: Host,
    options: EmbeddedEngineOptions = {},
  ) {
    this.host = spec.name;
    this.keys = engineHostKeys(fleet, spec.name);
    this.bootLatencyMs = options.bootLatencyMs ?? 10;
    this.sleep = options.sleep ?? defaultSleep;
    this.currentPlanKey = options.currentPlanKey;
  }

  async facts(): Promise<HostFacts> {
    await this.answering();
    return {
      name: this.spec.name,
      engine: 'embedded',
      cpu: this.spec.cpu,
      memoryMiB: this.spec.memoryMiB,
      diskGiB: this.spec.diskGiB,
      os: this.spec.os,
      runs: this.spec.runs,
    };
  }

  async list(): Promise<EngineInstance[]> {
    await this.answering();
    const all = await this.redis.hgetall(this.keys.instances);
    return Object.values(all)
      .map(reportedFrom)
      .sort((a, b) => (a.instance < b.instance ? -1 : 1));
  }

  async fences(): Promise<ReadonlyMap<string, number>> {
    await this.answering();
    const all = await this.redis.hgetall(this.keys.fence);
    return new Map(Object.entries(all).map(([name, generation]) => [name, Number(generation)]));
  }

  async describe(name: string): Promise<EngineInstance | undefined> {
    await this.answering();
    const json = await this.redis.hget(this.keys.instances, name);
    return json ? reportedFrom(json) : undefined;
  }

  async inventory(name: string): Promise<PackageVersions> {
    await this.answering();
    const json = await this.redis.hget(this.keys.instances, name);
    if (!json) throw new VfleetError('instance-missing', `${name} does not exist on ${this.host}`);
    return reportedFrom(json).packages;
  }

  async create(request: InstanceRequest): Promise<EngineInstance> {
    const record: EngineInstance = {
      instance: request.name,
      group: request.group,
      generation: request.generation,
      // With no boot latency there is nothing to wait for: one transition, not two.
      status: this.bootLatencyMs > 0 ? 'created' : 'running',
      image: request.image.name,
      resources: request.resources,
      packages: { ...request.image.packages },
    };
    const created = await this.transition(
      request.name,
      request.generation,
      'create',
      record,
      request.plan,
    );
    if (created.status === 'running') return created;
    if (this.bootLatencyMs > 0) await this.sleep(this.bootLatencyMs);
    return this.transition(request.name, request.generation, 'start');
  }

  start(name: string, generation: number): Promise<EngineInstance> {
    return this.transition(name, generation, 'start');
  }

  stop(name: string, generation: number): Promise<EngineInstance> {
    return this.transition(name, generation, 'stop');
  }

  async destroy(name: string, generation: number): Promise<void> {
    await this.transition(name, generation, 'destroy');
    await this.redis.hdel(this.keys.disks, name);
  }

  /**
   * Raises the packages on a copy of the inventory and records `lastPatch` as a real host does:
   * what changed, and `rebootRequired` when a package `options.reboot` names changed (the
   * baseline's `reboot: true`, standing in for dpkg's /var/run/reboot-required; cleared when the
   * instance is started again). An injected fault (`injectPatchFault`) fails it with
   * `patch-failed`, leaving the copy or, with `options.rollback`, the snapshot before it. The patch
   * takes the boot latency: the instance's services restart.
   */
  async patch(
    name: string,
    generation: number,
    packages: PackageVersions,
    options: PatchOptions = {},
  ): Promise<EngineInstance> {
    const patched = await this.transition(name, generation, 'patch', {
      p: packages,
      r: options.reboot ?? [],
      b: options.rollback === true,
    });
    if (this.bootLatencyMs > 0) await this.sleep(this.bootLatencyMs);
    return patched;
  }

  /**
   * Makes every patch of `instance` that installs `pkg` fail, as a package whose maintainer
   * script fails does (null: heals it). For tests and demonstrations, like `inject`.
   */
  async injectPatchFault(instance: string, pkg: string | null): Promise<void> {
    if (pkg === null) await this.redis.hdel(this.keys.patchFaults, instance);
    else await this.redis.hset(this.keys.patchFaults, instance, pkg);
  }

  async copyDisk(name: string, generation: number, to: HostEngine): Promise<void> {
    checkCopyTarget(this, name, to);
    await this.answering();
    const json = await this.redis.hget(this.keys.instances, name);
    if (!json) throw new VfleetError('instance-missing', `${name} does not exist on ${this.host}`);
    // The disk carries what is installed on it: the copy lands with the instance's packages.
    const { packages } = reportedFrom(json);
    await to.receiveDisk({ name, generation, from: this.host, packages });
  }

  async receiveDisk(transfer: DiskTransfer): Promise<void> {
    const { name, generation, from, packages } = transfer;
    await this.transition(name, generation, 'receive-disk', { from, generation, packages });
  }

  async replicate(
    name: string,
    generation: number,
    to: HostEngine,
    options: { readonly full?: string } = {},
  ): Promise<ReplicationResult> {
    checkReplicaTarget(this, name, to);
    await this.answering();
    const started = Date.now();
    const json = await this.redis.hget(this.keys.instances, name);
    if (!json) throw new VfleetError('instance-missing', `${name} does not exist on ${this.host}`);
    const record = reportedFrom(json);
    if (record.generation !== generation) {
      throw new VfleetError(
        'stale-generation',
        `${this.host} has ${name} at generation ${record.generation}, not ${generation}`,
      );
    }
    const held = (await to.replicas()).get(name);
    const fullReason =
      options.full ??
      (held === undefined
        ? `no replica on ${to.host} yet`
        : held.from !== this.host
          ? `the replica on ${to.host} is of ${held.from}'s disk`
          : undefined);
    const kind = fullReason === undefined ? 'incremental' : 'full';
    const consistentAt = Date.now();
    const point = await to.receiveReplica({
      name,
      from: this.host,
      generation,
      kind,
      bytes: emulatedBytes(
        kind,
        record.resources.diskGiB,
        consistentAt - (held?.consistentAt ?? consistentAt),
      ),
      consistentAt,
      after: kind === 'full' ? 0 : (held?.seq ?? 0),
      packages: record.packages,
    });
    return {
      point,
      ...(fullReason === undefined ? {} : { fullReason }),
      durationMs: Date.now() - started,
    };
  }

  async receiveReplica(incoming: ReplicaIncoming): Promise<ReplicaPoint> {
    await this.answering();
    return receiveReplica(this.redis, this.keys, this.host, incoming);
  }

  async replicas(): Promise<ReadonlyMap<string, ReplicaPoint>> {
    await this.answering();
    return replicaPoints(this.redis, this.keys);
  }

  async restoreReplica(name: string, generation: number): Promise<ReplicaPoint> {
    await this.answering();
    const replica = await readReplica(this.redis, this.keys, name);
    if (!replica) {
      throw new VfleetError('replica-missing', `${this.host} keeps no replica of ${name}`);
    }
    await this.receiveDisk({
      name,
      generation,
      from: replica.point.from,
      packages: replica.packages,
    });
    return replica.point;
  }

  async migrate(
    name: string,
    generation: number,
    to: HostEngine,
  ): Promise<{ readonly instance: EngineInstance; readonly downtimeMs: number }> {
    if (!this.capabilities.migratesTo.includes(to.engine) || !(to instanceof EmbeddedEngine)) {
      throw new VfleetError(
        'migration-failed',
        `${name} cannot migrate live from ${this.engine} host ${this.host} to ${to.engine} host ${to.host}`,
      );
    }
    return migrateEmbedded(
      this.redis,
      { host: this.host, keys: this.keys },
      { host: to.host, keys: to.keys },
      name,
      generation,
    );
  }

  async dropReplica(name: string): Promise<void> {
    await this.answering();
    await this.redis.hdel(this.keys.replicas, name);
  }

  async inject(fault: HostFault): Promise<void> {
    const k = this.keys;
    await runScript(
      this.redis,
      'inject',
      INJECT,
      [k.down, k.instances, k.agent, k.stopped],
      [fault],
    );
  }

  async injectedFault(): Promise<InjectedFault | undefined> {
    return faultOf(await this.redis.get(this.keys.down));
  }

  /** The host's patch level up by one, then a reboot's latency (the host answers after it). */
  async patchHost(rebootMs: number): Promise<HostPatchLevel> {
    await this.answering();
    const at = Date.now();
    const level = await this.redis.hincrby(this.keys.hostPatch, 'level', 1);
    await this.redis.hset(this.keys.hostPatch, 'at', String(at));
    if (rebootMs > 0) await this.sleep(rebootMs);
    return { level, at };
  }

  private async answering(): Promise<void> {
    if ((await this.redis.exists(this.keys.down)) === 1) throw unreachable(this.host);
  }

  private async transition(
    name: string,
    generation: number,
    op: 'create' | 'start' | 'stop' | 'destroy' | 'patch' | 'receive-disk',
    payload: unknown = {},
    plan?: string,
  ): Promise<EngineInstance> {
    const checked = plan !== undefined && this.currentPlanKey !== undefined;
    const k = this.keys;
    const [status, value] = (await runScript(
      this.redis,
      'transition',
      TRANSITION,
      [
        k.instances,
        k.fence,
        k.down,
        k.disks,
        checked ? (this.currentPlanKey as string) : k.down,
        k.stopped,
        k.patchFaults,
      ],
      [name, String(generation), op, JSON.stringify(payload), checked ? plan : ''],
    )) as [string, string];
    switch (status) {
      case 'ok':
        return value ? reportedFrom(value) : ({ instance: name } as EngineInstance);
      case 'down':
        throw unreachable(this.host);
      case 'superseded':
        throw new VfleetError(
          'superseded',
          `${this.host} refuses ${op} of ${name} for plan ${plan}: plan ${value || 'none'} is the one being applied`,
        );
      case 'patch-failed':
        throw new VfleetError('patch-failed', `${this.host}: ${value}`);
      case 'stale':
        throw new VfleetError(
          'stale-generation',
          `${this.host} refuses ${op} of ${name} at generation ${generation}: it has seen generation ${value}`,
        );
      default:
        throw new VfleetError('instance-missing', `${name} does not exist on ${this.host}`);
    }
  }
}

/**
 * A stored record as the host reports it. Records written before vfleet said `instance`
 * everywhere name the instance `name`: read as `instance`.
 */
export function reportedFrom(json: string): EngineInstance {
  const parsed = JSON.parse(json) as EngineInstance & { readonly name?: string };
  const record =
    parsed.lastPatch === undefined
      ? parsed
      : { ...parsed, lastPatch: lastPatchOf(parsed.lastPatch) };
  if (record.instance !== undefined) return record;
  const { name, ...rest } = record;
  return { ...rest, instance: name as string };
}

/**
 * A `lastPatch` as the Lua left it: Lua's cjson writes an empty list as `{}` and a table's keys
 * in no order; the changes sorted by package, as a real host's are.
 */
function lastPatchOf(raw: PatchRecord): PatchRecord {
  const changed = Array.isArray(raw.changed) ? [...raw.changed] : [];
  changed.sort((a, b) => (a.package < b.package ? -1 : a.package > b.package ? 1 : 0));
  return { ...raw, changed };
}

function unreachable(host: string): VfleetError {
  return new VfleetError('host-unreachable', `host ${host} does not answer`, { retryable: true });
}

/** The fault a `down` key's value says (absent: none). */
export function faultOf(down: string | null | undefined): InjectedFault | undefined {
  if (down === null || down === undefined) return undefined;
  return down === 'partitioned' ? 'partitioned' : 'failed';
}
