// The fleet's record of its VMs' disk replication (model/replication.ts): one hash, instance →
// status, written by the sync jobs and read by status, the failover audit and the planner; and
// the per-instance lock that keeps one sync of an instance running at a time.

import type { ReplicationStatus } from '../model/replication.js';
import { type FleetKeys, fleetKeys } from './keys.js';
import { runScript } from './lua-script.js';
import type { RedisClient } from './redis-client.js';

export class ReplicationState {
  private readonly keys: FleetKeys;

  constructor(
    private readonly redis: RedisClient,
    fleet: string,
  ) {
    this.keys = fleetKeys(fleet);
  }

  async all(): Promise<Map<string, ReplicationStatus>> {
    const all = await this.redis.hgetall(this.keys.replication);
    return new Map(
      Object.entries(all).map(([name, json]) => [name, JSON.parse(json) as ReplicationStatus]),
    );
  }

  async get(name: string): Promise<ReplicationStatus | undefined> {
    const json = await this.redis.hget(this.keys.replication, name);
    return json === null ? undefined : (JSON.parse(json) as ReplicationStatus);
  }

  async put(status: ReplicationStatus): Promise<void> {
    await this.redis.hset(this.keys.replication, status.instance, JSON.stringify(status));
  }

  async forget(names: readonly string[]): Promise<void> {
    if (names.length > 0) await this.redis.hdel(this.keys.replication, ...names);
  }

  /** Takes the instance's sync lock for `ms` (false: a sync of it is running); `release` frees it. */
  async lock(name: string, token: string, ms: number): Promise<boolean> {
    return (
      (await this.redis.set(`${this.keys.replicationLock}${name}`, token, 'PX', ms, 'NX')) === 'OK'
    );
  }

  async release(name: string, token: string): Promise<void> {
    await runScript(
      this.redis,
      'replication_release',
      "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
      [`${this.keys.replicationLock}${name}`],
      [token],
    );
  }
}
