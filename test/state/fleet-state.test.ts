// FleetState against a real redis-server: records round-trip, every mutation bumps the version,
// readAll is one round trip, the lock is exclusive and expires, the event stream is capped.
// Each test uses its own fleet name, so tests share the server but no keys.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { isVfleetError } from '../../src/model/errors.js';
import {
  FleetState,
  type LockHolder,
  type ObservedInstanceRecord,
} from '../../src/state/fleet-state.js';
import { EVENTS_MAXLEN, fleetKeys } from '../../src/state/keys.js';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';

let server: TestRedisServer;
let redis: Redis;
let fleets = 0;

/** A FleetState on a fleet no other test uses. */
function aFleet(): FleetState {
  fleets += 1;
  return new FleetState(redis, `fleet-${fleets}`);
}

function anInstance(overrides: Partial<ObservedInstanceRecord> = {}): ObservedInstanceRecord {
  return {
    instance: 'web-0',
    group: 'web',
    host: 'hv-01',
    generation: 1,
    status: 'running',
    image: 'debian-12',
    resources: { vcpus: 2, memoryMiB: 2048, diskGiB: 20 },
    failoverHost: 'hv-02',
    packages: { openssl: '3.0.15-1~deb12u1' },
    ...overrides,
  };
}

function aHolder(id: string): LockHolder {
  return { id, pid: 4242, host: 'ci-runner-1', since: 1_700_000_000_000 };
}

before(async () => {
  server = await startRedisServer();
  redis = server.client();
});

after(async () => {
  await server.stop();
});

describe('FleetState records', () => {
  it('reads an empty fleet as version 0 with nothing in it', async () => {
    assert.deepEqual(await aFleet().readAll(), { version: 0, hosts: [], instances: [] });
  });

  it('round-trips hosts, heartbeats and instances, sorted by name', async () => {
    const state = aFleet();
    await state.putHost('hv-02', { memoryMiB: 65536, os: { family: 'debian' } });
    await state.putHost('hv-01', { memoryMiB: 32768 });
    await state.heartbeat('hv-01', 1_700_000_000_123);
    const web1 = anInstance({ instance: 'web-1', host: 'hv-02', failoverHost: null });
    await state.putInstance(web1);
    await state.putInstance(anInstance());
    assert.deepEqual(await state.readAll(), {
      version: 4,
      hosts: [
        { name: 'hv-01', facts: { memoryMiB: 32768 }, lastHeartbeat: 1_700_000_000_123 },
        {
          name: 'hv-02',
          facts: { memoryMiB: 65536, os: { family: 'debian' } },
          lastHeartbeat: null,
        },
      ],
      instances: [anInstance(), web1],
    });
  });

  it('bumps the version on every mutation, and not on a heartbeat', async () => {
    const state = aFleet();
    const versions = [
      await state.putHost('hv-01', {}),
      await state.putInstance(anInstance()),
      await state.putInstance(anInstance({ generation: 2, status: 'stopped' })),
      await state.deleteInstance('web-0'),
      await state.deleteInstance('web-0'),
    ];
    assert.deepEqual(versions, [1, 2, 3, 4, 5]);
    await state.heartbeat('hv-01', 1);
    assert.equal(await state.version(), 5, 'a heartbeat changes nothing a plan depends on');
    assert.deepEqual((await state.readAll()).instances, []);
  });

  it("writes a job's record only while its plan is the one being applied", async () => {
    const state = aFleet();
    await state.setCurrentPlan('plan-a');
    assert.equal(await state.putInstanceOfPlan(anInstance(), 'plan-a'), true);
    assert.equal(await state.version(), 1);
    assert.deepEqual(
      (await state.readAll()).instances.map((i) => [i.instance, i.generation, i.packages]),
      [['web-0', 1, { openssl: '3.0.15-1~deb12u1' }]],
      'the record and the package list it names',
    );
    // A newer plan took over: the late job of plan-a writes nothing, the version stays.
    await state.setCurrentPlan('plan-b');
    const late = anInstance({ generation: 2, packages: { openssl: '3.0.16-1~deb12u1' } });
    assert.equal(await state.putInstanceOfPlan(late, 'plan-a'), false);
    assert.equal(await state.version(), 1);
    assert.deepEqual(
      (await state.readAll()).instances.map((i) => [i.instance, i.generation]),
      [['web-0', 1]],
    );
    assert.equal(await state.putInstanceOfPlan(late, 'plan-b'), true);
    assert.deepEqual((await state.readAll()).instances[0]?.packages, {
      openssl: '3.0.16-1~deb12u1',
    });
  });

  it('counts concurrent mutations exactly (each one is a MULTI with its INCR)', async () => {
    const state = aFleet();
    await Promise.all(
      Array.from({ length: 50 }, (_, i) => state.putInstance(anInstance({ instance: `web-${i}` }))),
    );
    const all = await state.readAll();
    assert.equal(all.version, 50);
    assert.equal(all.instances.length, 50);
  });

  it('reads everything in one round trip, however many instances there are', async () => {
    const state = aFleet();
    const instances: Record<string, string> = {};
    for (let i = 0; i < 5_000; i++) {
      instances[`web-${i}`] = JSON.stringify(anInstance({ instance: `web-${i}` }));
    }
    await redis.hset(state.keys.instances, instances);
    await state.putHost('hv-01', {});
    await state.heartbeat('hv-01', 7);
    // Every request ioredis sends is one write on its socket: count them during readAll.
    const stream = redis.stream;
    const write = stream.write;
    let writes = 0;
    stream.write = function (this: typeof stream, ...args: Parameters<typeof write>) {
      writes += 1;
      return write.apply(this, args);
    } as typeof write;
    try {
      const all = await state.readAll();
      assert.equal(all.instances.length, 5_000);
      assert.equal(all.hosts.length, 1);
    } finally {
      stream.write = write;
    }
    assert.equal(writes, 1);
  });

  it('reads records whatever their key order, sharing one object per package list', async () => {
    const state = aFleet();
    const a = anInstance({ instance: 'web-0' });
    const b = anInstance({ instance: 'web-1', host: 'hv-02' });
    const { packages, ...rest } = anInstance({ instance: 'web-2' });
    const odd = anInstance({ instance: 'web-3', packages: { 'a}b': '1,"packages":{"x":"2"}' } });
    await redis.hset(state.keys.instances, {
      'web-0': JSON.stringify(a),
      'web-1': JSON.stringify(b),
      // packages first, and a record whose packages hold the markers the shortcut looks for
      'web-2': JSON.stringify({ packages, ...rest }),
      'web-3': JSON.stringify(odd),
      // a record with no packages at all, and one whose last key only looks like packages
      'web-4': JSON.stringify({ ...rest, instance: 'web-4', packages: undefined }),
      'web-5': `${JSON.stringify({ ...rest, instance: 'web-5', meta: { packages: { y: '3' } } })}`,
    });
    const { instances } = await state.readAll();
    assert.deepEqual(instances, [
      a,
      b,
      { packages, ...rest },
      odd,
      { ...rest, instance: 'web-4' },
      { ...rest, instance: 'web-5', meta: { packages: { y: '3' } } },
    ]);
    assert.equal(instances[0]?.packages, instances[1]?.packages);
    assert.ok(Object.isFrozen(instances[0]?.packages));
  });

  it('stores records compactly: what a group shares once, as a profile naming its package list', async () => {
    const state = aFleet();
    const other = { openssl: '3.0.16-1~deb12u1' };
    // homeHost before packages, as a job writes it (model/instances.ts, recordedAfterAction)
    const { packages: _, ...fields } = anInstance({ instance: 'web-2' });
    const web2 = { ...fields, homeHost: 'hv-03', packages: other };
    await state.putInstance(anInstance({ instance: 'web-0' }));
    await state.putInstance(anInstance({ instance: 'web-1', host: 'hv-02', failoverHost: null }));
    await state.putInstance(web2);
    const lists = await redis.hgetall(state.keys.packages);
    assert.equal(Object.keys(lists).length, 2);
    const profiles = await redis.hgetall(state.keys.profiles);
    assert.equal(Object.keys(profiles).length, 2, 'web-0 and web-1 share theirs');
    assert.equal(
      JSON.parse((await redis.hget(state.keys.instances, 'web-2')) as string)[6],
      'hv-03',
    );
    const stored = JSON.parse((await redis.hget(state.keys.instances, 'web-1')) as string);
    assert.equal(stored.length, 6);
    const [instance, host, generation, status, failoverHost, id] = stored;
    assert.deepEqual(
      [instance, host, generation, status, failoverHost],
      ['web-1', 'hv-02', 1, 'running', null],
    );
    const profile = JSON.parse(profiles[id] as string);
    assert.deepEqual(Object.keys(profile), ['group', 'image', 'resources', 'packages']);
    assert.equal(profile.group, 'web');
    assert.deepEqual(JSON.parse(lists[profile.packages] as string), anInstance().packages);
    const { instances } = await state.readAll();
    assert.deepEqual(instances, [
      anInstance({ instance: 'web-0' }),
      anInstance({ instance: 'web-1', host: 'hv-02', failoverHost: null }),
      web2,
    ]);
    // Read back as written, key order included (a plan's JSON shows records as they are).
    assert.deepEqual(Object.keys(instances[0] as object), Object.keys(anInstance()));
    assert.deepEqual(Object.keys(instances[2] as object), [
      ...Object.keys(anInstance()).filter((k) => k !== 'packages'),
      'homeHost',
      'packages',
    ]);
    assert.equal(instances[0]?.packages, instances[1]?.packages);
    assert.equal(instances[0]?.resources, instances[1]?.resources);
    assert.ok(Object.isFrozen(instances[2]?.packages));
    assert.ok(Object.isFrozen(instances[0]?.resources));
    assert.deepEqual(await state.instance('web-2'), instances[2]);
    assert.equal(await state.instance('web-9'), undefined);
  });

  it('keeps a record of another shape whole, and reads it back exactly', async () => {
    const state = aFleet();
    const { packages, ...rest } = anInstance({ instance: 'web-1' });
    const shapes = [
      // no package list, another key order, a key of its own, a homeHost that is not a string
      { ...rest, instance: 'web-0' },
      { packages, ...rest },
      { ...anInstance({ instance: 'web-2' }), note: 'x' },
      { ...rest, instance: 'web-3', homeHost: null, packages },
    ] as unknown as ObservedInstanceRecord[];
    for (const record of shapes) await state.putInstance(record);
    const stored = await redis.hgetall(state.keys.instances);
    assert.equal(typeof JSON.parse(stored['web-0'] as string)[0], 'string', 'web-0 is compact');
    for (const name of ['web-1', 'web-2', 'web-3'])
      assert.equal(JSON.parse(stored[name] as string).instance, name, `${name} is an object`);
    const { instances } = await state.readAll();
    assert.deepEqual(instances, shapes);
    instances.forEach((record, i) => {
      assert.deepEqual(Object.keys(record), Object.keys(shapes[i] as object));
    });
  });

  it('reads records with the list inline (older vfleet) beside records naming theirs', async () => {
    const state = aFleet();
    await redis.hset(state.keys.instances, 'web-0', JSON.stringify(anInstance()));
    await state.putInstance(anInstance({ instance: 'web-1' }));
    const { instances } = await state.readAll();
    assert.deepEqual(instances, [anInstance(), anInstance({ instance: 'web-1' })]);
  });

  it('returns records sorted by name whether or not their raw text begins with it', async () => {
    const state = aFleet();
    const names = ['web-10', 'web-2', 'wéb-1', 'web-1', 'a\u{1F600}-0', 'a\uFFFF-0'];
    for (const instance of names) await state.putInstance(anInstance({ instance }));
    const sorted = [...names].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    assert.deepEqual(
      (await state.readAll()).instances.map((i) => i.instance),
      sorted,
    );
    // A record written with another key order among them: sorted all the same.
    const { instance, ...rest } = anInstance({ instance: 'web-0' });
    await redis.hset(state.keys.instances, 'web-0', JSON.stringify({ ...rest, instance }));
    assert.deepEqual(
      (await state.readAll()).instances.map((i) => i.instance),
      [...sorted.slice(0, 2), 'web-0', ...sorted.slice(2)],
    );
  });

  it('reports a record naming a package list the state lacks as state-corrupt', async () => {
    const state = aFleet();
    await state.putInstance(anInstance());
    await redis.del(state.keys.packages);
    await assert.rejects(state.readAll(), (e: unknown) => {
      assert.ok(isVfleetError(e));
      assert.equal(e.code, 'state-corrupt');
      assert.match(e.message, /instances field web-0 names the package list \w+/);
      return true;
    });
  });

  it('reports a record naming a profile the state lacks as state-corrupt', async () => {
    const state = aFleet();
    await state.putInstance(anInstance());
    await redis.del(state.keys.profiles);
    await assert.rejects(state.readAll(), (e: unknown) => {
      assert.ok(isVfleetError(e));
      assert.equal(e.code, 'state-corrupt');
      assert.match(e.message, /instances field web-0 names the profile \S+/);
      return true;
    });
  });

  it('reports a record that is not JSON as state-corrupt, naming where', async () => {
    const state = aFleet();
    await redis.hset(state.keys.instances, 'web-0', '{not json');
    await assert.rejects(state.readAll(), (e: unknown) => {
      assert.ok(isVfleetError(e));
      assert.equal(e.code, 'state-corrupt');
      assert.match(e.message, /instances field web-0/);
      return true;
    });
  });

  it('keeps every key of the fleet under its hash tag', async () => {
    const state = aFleet();
    await state.putHost('hv-01', {});
    await state.heartbeat('hv-01', 1);
    await state.putInstance(anInstance());
    await state.acquireLock(aHolder('a'), 60_000);
    await state.appendEvent({ kind: 'create' });
    const keys = await redis.keys(`*${state.fleet}*`);
    // version, hosts, heartbeats, instances, packages, profiles, lock, events
    assert.equal(keys.length, 8);
    for (const key of keys) assert.ok(key.startsWith(`vfleet:{${state.fleet}}:`), key);
  });
});

describe('FleetState lock', () => {
  it('lets one holder in and tells the next who holds it', async () => {
    const state = aFleet();
    assert.deepEqual(await state.acquireLock(aHolder('apply-1'), 60_000), { ok: true });
    assert.deepEqual(await state.acquireLock(aHolder('apply-2'), 60_000), {
      ok: false,
      holder: aHolder('apply-1'),
    });
    assert.deepEqual(await state.lockHolder(), aHolder('apply-1'));
  });

  it('ignores a release or renew by a non-holder; the holder releases', async () => {
    const state = aFleet();
    await state.acquireLock(aHolder('apply-1'), 60_000);
    assert.equal(await state.releaseLock('apply-2'), false);
    assert.equal(await state.renewLock('apply-2', 1), false);
    assert.deepEqual(await state.lockHolder(), aHolder('apply-1'));
    assert.ok((await redis.pttl(state.keys.lock)) > 1_000, 'the TTL was not touched');
    assert.equal(await state.renewLock('apply-1', 120_000), true);
    assert.ok((await redis.pttl(state.keys.lock)) > 60_000, 'the holder extended it');
    assert.equal(await state.releaseLock('apply-1'), true);
    assert.equal(await state.lockHolder(), null);
    assert.equal(await state.releaseLock('apply-1'), false, 'releasing twice is harmless');
  });

  it('frees the lock when its TTL runs out (a crashed holder)', async () => {
    const state = aFleet();
    await state.acquireLock(aHolder('crashed'), 50);
    // Wait for Redis to expire it: a condition, not a duration (habit 11, docs/architecture.md).
    for (let i = 0; i < 200 && (await redis.exists(state.keys.lock)) === 1; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.deepEqual(await state.acquireLock(aHolder('next'), 60_000), { ok: true });
    assert.equal(await state.renewLock('crashed', 60_000), false, 'the old holder lost it');
  });

  it('force-unlocks only the lock named by its id', async () => {
    const state = aFleet();
    assert.deepEqual(await state.forceUnlock('nobody'), { ok: false, holder: null });
    await state.acquireLock(aHolder('apply-1'), 60_000);
    assert.deepEqual(await state.forceUnlock('apply-0'), {
      ok: false,
      holder: aHolder('apply-1'),
    });
    assert.deepEqual(await state.forceUnlock('apply-1'), { ok: true, holder: aHolder('apply-1') });
    assert.deepEqual(await state.acquireLock(aHolder('apply-2'), 60_000), { ok: true });
  });

  it('does not bump the state version', async () => {
    const state = aFleet();
    await state.acquireLock(aHolder('a'), 60_000);
    await state.renewLock('a', 60_000);
    await state.releaseLock('a');
    assert.equal(await state.version(), 0);
  });
});

describe('FleetState events', () => {
  it('returns the last events, oldest first', async () => {
    const state = aFleet();
    const ids = [];
    for (const n of [1, 2, 3]) ids.push(await state.appendEvent({ action: `web-${n}.create`, n }));
    const events = await state.readEvents(2);
    assert.deepEqual(
      events.map((e) => e.event),
      [
        { action: 'web-2.create', n: 2 },
        { action: 'web-3.create', n: 3 },
      ],
    );
    assert.deepEqual(
      events.map((e) => e.id),
      ids.slice(1),
    );
    assert.deepEqual(await aFleet().readEvents(10), []);
  });

  it('caps the stream at about 10,000 entries', async () => {
    const state = aFleet();
    await Promise.all(
      Array.from({ length: EVENTS_MAXLEN + 1_500 }, (_, n) => state.appendEvent({ n })),
    );
    const length = await redis.xlen(fleetKeys(state.fleet).events);
    // `MAXLEN ~` trims whole stream nodes (100 entries by default): a little above the cap.
    assert.ok(length >= EVENTS_MAXLEN && length < EVENTS_MAXLEN + 200, String(length));
    const [last] = await state.readEvents(1);
    assert.deepEqual(last?.event, { n: EVENTS_MAXLEN + 1_499 });
  });
});
