// vfleet on a real Redis Cluster (3 masters started by the test: helpers/redis-cluster.ts), below
// the CLI: every Lua script of vfleet runs there — for three fleets whose slots are on three
// different masters, so none runs on the node it was first sent to by chance — and none meets
// CROSSSLOT (a fleet's keys are one slot: docs/redis.md); the script list is read off the
// sources, so a new script is in it. The eviction check asks every node; the raw state read
// finds the slot's node (MOVED) and reads what ioredis reads.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EmbeddedEngine } from '../../src/engines/embedded/embedded-engine.js';
import { embeddedAgentTick } from '../../src/engines/embedded/emulated-agent.js';
import {
  embeddedFaults,
  embeddedFences,
  embeddedListing,
  embeddedRunning,
  instancesAt,
} from '../../src/engines/embedded/fleet-reads.js';
import { isVfleetError } from '../../src/model/errors.js';
import { connectRedis, type RedisConnection } from '../../src/state/connect-redis.js';
import { ControlState } from '../../src/state/control-state.js';
import { FleetState } from '../../src/state/fleet-state.js';
import { fleetKeys } from '../../src/state/keys.js';
import { fetchStateRaw } from '../../src/state/raw-state-read.js';
import { isCluster } from '../../src/state/redis-client.js';
import { ReplicationState } from '../../src/state/replication-state.js';
import { defaultRequest, engineConformance } from '../engines/conformance.js';
import { aModelHost } from '../helpers/hosts.js';
import { fromRoot } from '../helpers/paths.js';
import { startRedisCluster, type TestRedisCluster } from '../helpers/redis-cluster.js';

const PASSWORD = 'cluster-Canary-9d2e';
let cluster: TestRedisCluster;
let connection: RedisConnection;

/** Every script name vfleet runs (runScript(redis, '<name>', …) in src/), read off the sources. */
function scriptNames(): Set<string> {
  const names = new Set<string>();
  const visit = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) visit(path);
      else if (path.endsWith('.ts')) {
        const text = readFileSync(path, 'utf8');
        for (const m of text.matchAll(/runScript\(\s*[\w.]+,\s*'([\w-]+)'/g))
          names.add(m[1] as string);
      }
    }
  };
  visit(fromRoot('src'));
  return names;
}

/** Fleet names whose slots are on `count` different masters. */
async function fleetsOnDistinctMasters(count: number): Promise<string[]> {
  const client = cluster.client();
  await client.ping();
  const owner = (slot: number) =>
    client.slots[slot]?.[0] ?? assert.fail(`slot ${slot} has no master`);
  const fleets: string[] = [];
  const masters = new Set<string>();
  for (let i = 0; fleets.length < count && i < 1000; i++) {
    const fleet = `fleet-${i}`;
    const slot = Number(await client.cluster('KEYSLOT', fleetKeys(fleet).version));
    const master = owner(slot);
    if (masters.has(master)) continue;
    masters.add(master);
    fleets.push(fleet);
  }
  assert.equal(fleets.length, count);
  return fleets;
}

const env = (url: string) => ({ ...process.env, REDIS_URL: url });

before(async () => {
  cluster = await startRedisCluster({ password: PASSWORD });
  connection = await connectRedis({ cwd: cluster.dir, env: env(cluster.url()) });
});

after(async () => {
  await connection?.close();
  await cluster?.stop();
});

describe('REDIS_URL=redis-cluster:// connects a Cluster client', () => {
  it('is a Cluster, shown without the password', () => {
    assert.ok(isCluster(connection.redis));
    assert.match(
      connection.url,
      /^redis-cluster:\/\/:\*\*\*@127\.0\.0\.1:\d+,127\.0\.0\.1:\d+,127\.0\.0\.1:\d+$/,
    );
    assert.ok(!connection.url.includes(PASSWORD));
  });
});

describe('every Lua script runs on a Cluster, each fleet on its own master', () => {
  const host = (name: string) =>
    aModelHost({
      name,
      cpu: { sockets: 1, coresPerSocket: 8, threadsPerCore: 2 },
      memoryMiB: 16384,
    });

  it('runs them all, without CROSSSLOT, for fleets on three masters', async () => {
    const redis = connection.redis;
    for (const fleet of await fleetsOnDistinctMasters(3)) {
      const keys = fleetKeys(fleet);
      const a = new EmbeddedEngine(redis, fleet, host('emu-a'), {
        bootLatencyMs: 0,
        currentPlanKey: keys.currentPlan,
      });
      const b = new EmbeddedEngine(redis, fleet, host('emu-b'), { bootLatencyMs: 0 });
      const state = new FleetState(redis, fleet);
      await state.setCurrentPlan('p1');
      // transition: create, stop, start, patch, destroy, receive-disk (a move)
      await a.create({ ...defaultRequest('web-0', 1), plan: 'p1' });
      await a.create(defaultRequest('web-1', 1));
      await a.stop?.('web-1', 2);
      await a.start?.('web-1', 3);
      await a.copyDisk('web-1', 4, b);
      await a.destroy('web-1', 4);
      // migrate (live, between two emulated hosts), receive-replica
      await a.create(defaultRequest('vm-0', 1));
      await a.migrate('vm-0', 2, b);
      await a.receiveReplica({
        name: 'vm-9',
        from: 'emu-b',
        generation: 1,
        kind: 'full',
        bytes: 1,
        consistentAt: Date.now(),
        after: 0,
        packages: {},
      });
      // the reads over many hosts: joined, running, listing; a pipeline of GETs and HGETs
      const hosts = ['emu-a', 'emu-b'];
      // the move's disk is on emu-b (not started: the move's next step would), the VM runs there
      assert.deepEqual((await embeddedRunning(redis, fleet, hosts)).get('emu-b'), ['vm-0']);
      assert.ok((await embeddedListing(redis, fleet, hosts)).get('emu-a'));
      assert.match((await embeddedFences(redis, fleet, hosts)).get('emu-a') ?? '', /web-1\n4/);
      assert.equal((await instancesAt(redis, fleet, [{ host: 'emu-a', name: 'web-0' }])).length, 1);
      // inject, the agents' tick
      await b.inject('partition');
      assert.equal((await embeddedFaults(redis, fleet, hosts)).get('emu-b'), 'partitioned');
      const ticks = await embeddedAgentTick(redis, fleet, hosts, Date.now(), 10_000);
      assert.equal(ticks.get('emu-a')?.state, 'ok');
      await b.inject('recover');
      // the fleet lock, the leader lease, host leases, the replication lock
      const holder = { id: 'l1', pid: 1, host: 'here', since: 0 };
      assert.deepEqual(await state.acquireLock(holder, 10_000), { ok: true });
      assert.equal(await state.renewLock('l1', 10_000), true);
      assert.deepEqual(
        (await FleetState.heldLocks(redis)).find((l) => l.fleet === fleet)?.holder,
        holder,
      );
      assert.equal(await state.releaseLock('l1'), true);
      // a job's record, fenced by its plan (with a package list: a key besides the record's)
      assert.equal(
        await state.putInstanceOfPlan(
          {
            instance: 'web-0',
            group: 'web',
            host: 'emu-a',
            generation: 1,
            status: 'running',
            image: 'debian-12',
            resources: { vcpus: 1, memoryMiB: 512, diskGiB: 1 },
            failoverHost: null,
            packages: { openssl: '3.0.15-1~deb12u1' },
          },
          'p1',
        ),
        true,
      );
      const control = new ControlState(redis, fleet);
      const policy = { ttlMs: 10_000, graceMs: 4_000 } as never;
      const taken = await control.takeLeadership(
        { id: 'c1', pid: 1, host: 'here', since: 0, policy },
        10_000,
      );
      assert.equal(taken.leader, true);
      assert.equal(await control.renewLeadership('c1', taken.holder?.token ?? -1, 10_000), true);
      assert.equal(await control.releaseLeadership('c1', taken.holder?.token ?? -1), true);
      await control.renewLease('emu-a', Date.now(), 'test');
      const replication = new ReplicationState(redis, fleet);
      assert.equal(await replication.lock('vm-0', 't1', 10_000), true);
      await replication.release('vm-0', 't1');
      assert.equal(await replication.lock('vm-0', 't2', 10_000), true);
    }
    // Every script of the sources ran on this client (ioredis defines each once, on first use).
    const defined = redis as unknown as Record<string, unknown>;
    const names = scriptNames();
    assert.ok(names.size >= 14, `scripts found: ${[...names].join(', ')}`);
    const missing = [...names].filter((n) => typeof defined[`vfleet_${n}`] !== 'function');
    assert.deepEqual(missing, [], 'scripts this test did not run');
  });

  it('no script is sent any other way than runScript (which checks one hash tag)', () => {
    const offenders: string[] = [];
    const visit = (dir: string) => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const path = join(dir, entry.name);
        if (entry.isDirectory()) visit(path);
        else if (
          path.endsWith('.ts') &&
          /\.(eval|evalsha|fcall)\(|'EVAL/.test(readFileSync(path, 'utf8'))
        )
          offenders.push(path);
      }
    };
    visit(fromRoot('src'));
    assert.deepEqual(offenders, []);
  });
});

engineConformance('embedded, on a Redis Cluster', async () => {
  const redis = connection.redis;
  const options = { bootLatencyMs: 1 };
  const host = (name: string) =>
    aModelHost({
      name,
      cpu: { sockets: 1, coresPerSocket: 8, threadsPerCore: 2 },
      memoryMiB: 16384,
    });
  const a = new EmbeddedEngine(redis, 'conformance', host('emu-a'), options);
  const b = new EmbeddedEngine(redis, 'conformance', host('emu-b'), options);
  const byName = (name: string) => (name === a.host ? a : b);
  return {
    a,
    b,
    fail: (name) => byName(name).inject('fail'),
    recover: (name) => byName(name).inject('recover'),
    close: async () => undefined,
  };
});

describe('the raw state read on a Cluster', () => {
  it('follows MOVED to the slot’s node and reads what ioredis reads, for fleets on every master', async () => {
    const seeds = cluster.nodes.map((n) => ({ host: '127.0.0.1', port: n.port }));
    for (const fleet of await fleetsOnDistinctMasters(3)) {
      const state = new FleetState(connection.redis, fleet);
      await state.putHost('emu-a', { cpu: 4 });
      const raw = await fetchStateRaw({ seeds, password: PASSWORD }, fleet, 2_000);
      const viaIoredis = await state.fetch();
      assert.equal(raw.version, viaIoredis.version);
      assert.deepEqual(raw.hosts, viaIoredis.hosts);
    }
  });
});

describe('the eviction check asks every node of a Cluster', () => {
  it('refuses a Cluster one of whose nodes may evict, naming that node, with the fix', async () => {
    const node = cluster.node(2);
    await node.config('SET', 'maxmemory-policy', 'allkeys-lru');
    try {
      await assert.rejects(connectRedis({ cwd: cluster.dir, env: env(cluster.url()) }), (e) => {
        assert.ok(isVfleetError(e));
        assert.equal(e.code, 'redis-eviction-policy');
        assert.match(
          e.message,
          new RegExp(
            `Redis 127\\.0\\.0\\.1:${cluster.nodes[2]?.port} of redis-cluster://:\\*\\*\\*@`,
          ),
        );
        assert.match(
          e.message,
          /maxmemory-policy allkeys-lru.*CONFIG SET maxmemory-policy noeviction/,
        );
        assert.ok(!e.message.includes(PASSWORD));
        return true;
      });
    } finally {
      await node.config('SET', 'maxmemory-policy', 'noeviction');
    }
  });
});
