// The queue tests' rig (run-plan, rolling-patch): a StateSink in memory (the instances, the
// events and the patch statuses the jobs write) and a fleet's embedded hosts on a test's
// redis-server, with runPlan's options over them.
import { Redis } from 'ioredis';
import { EmbeddedEngine } from '../../src/engines/embedded/embedded-engine.js';
import type { Fleet } from '../../src/model/fleet.js';
import type { PatchStatus, RecordedInstance } from '../../src/model/instances.js';
import type { ObservedState } from '../../src/model/observed.js';
import type { StateSink } from '../../src/queue/action-handler.js';
import type { TestRedisServer } from './redis.js';

export class MemoryState implements StateSink {
  readonly instances = new Map<string, RecordedInstance>();
  readonly events: Array<Record<string, unknown>> = [];
  readonly patches = new Map<string, PatchStatus>();
  version = 0;
  /** The plan being applied (null: whichever plan asks). */
  current: string | null = null;
  async putInstance(record: RecordedInstance): Promise<void> {
    this.instances.set(record.instance, record);
    this.version++;
  }
  async deleteInstance(name: string): Promise<void> {
    this.instances.delete(name);
    this.version++;
  }
  async isLeaderToken(_token: number): Promise<boolean> {
    return false;
  }
  async isCurrentPlan(id: string): Promise<boolean> {
    return this.current === null || this.current === id;
  }
  async appendEvent(event: Record<string, unknown>): Promise<void> {
    this.events.push(event);
  }
  async putPatchStatus(name: string, status: PatchStatus | null): Promise<void> {
    if (status === null) this.patches.delete(name);
    else this.patches.set(name, status);
  }
  observed(): ObservedState {
    return { version: this.version, instances: [...this.instances.values()] };
  }
}

/** `fleet`'s hosts as embedded engines under `fleetName`, a MemoryState, runPlan's options. */
export function embeddedQueueRig(
  server: TestRedisServer,
  redis: Redis,
  fleetName: string,
  fleet: Fleet,
  clock: () => number,
) {
  const engines = new Map(
    fleet.hosts.map((h) => [h.name, new EmbeddedEngine(redis, fleetName, h, { bootLatencyMs: 0 })]),
  );
  const state = new MemoryState();
  const options = {
    connect: () => new Redis({ path: server.socket, maxRetriesPerRequest: null }),
    prefix: `vfleet:{${fleetName}}:q`,
    engines: { engine: (host: string) => engines.get(host) as EmbeddedEngine },
    state,
    clock,
    concurrency: 4,
    attempts: 2,
  };
  return { engines, state, options };
}
