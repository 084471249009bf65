// The state read over a raw connection (state/raw-reply.ts, fetchStateRaw) against a real
// redis-server: it reads what FleetState.fetch reads through ioredis, whatever the records'
// form and however the reply is cut into chunks; AUTH and SELECT as REDIS_URL asks; and it
// rejects (so that the caller reads through ioredis) on a refused password, an error reply, a
// server that closes, or when abandoned.
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { FleetState, type ObservedInstanceRecord } from '../../src/state/fleet-state.js';
import { rawTransaction } from '../../src/state/raw-reply.js';
import { fetchStateRaw } from '../../src/state/raw-state-read.js';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';

const PASSWORD = 'raw-read-secret';
let server: TestRedisServer;
let redis: Redis;
let port: number;

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

before(async () => {
  server = await startRedisServer({ tcp: true, args: ['--requirepass', PASSWORD] });
  redis = server.client({ password: PASSWORD });
  port = Number(new URL(server.url).port);
});

after(async () => {
  await server.stop();
});

const endpoint = (extra: { password?: string; db?: number } = {}) => ({
  host: '127.0.0.1',
  port,
  password: PASSWORD,
  ...extra,
});

describe('fetchStateRaw', () => {
  it('reads what FleetState.fetch reads, compact and older records alike', async () => {
    const state = new FleetState(redis, 'raw-a');
    await state.putHost('hv-01', { memoryMiB: 1024 });
    await state.heartbeat('hv-02', 7);
    for (let i = 0; i < 5; i++) await state.putInstance(anInstance({ instance: `web-${i}` }));
    // an older record: the object form, its package list inline
    await redis.hset(
      state.keys.instances,
      'db-0',
      JSON.stringify(anInstance({ instance: 'db-0' })),
    );
    const raw = await state.decode(await fetchStateRaw(endpoint(), 'raw-a', 5_000));
    assert.deepEqual(raw, await state.readAll());
    assert.equal(raw.instances.length, 6);
  });

  it('reads an empty fleet (no version, no hashes)', async () => {
    const state = new FleetState(redis, 'raw-empty');
    assert.deepEqual(await state.decode(await fetchStateRaw(endpoint(), 'raw-empty', 5_000)), {
      version: 0,
      hosts: [],
      instances: [],
    });
  });

  it('reads a reply of many chunks, records cut anywhere', async () => {
    const state = new FleetState(redis, 'raw-big');
    const records: Record<string, string> = {};
    for (let i = 0; i < 20_000; i++) {
      const instance = `app-${i % 7}-${i}`;
      records[instance] = JSON.stringify([instance, `hv-${i % 50}`, i, 'running', null, 'p1']);
    }
    await redis.hset(state.keys.instances, records);
    await redis.hset(
      state.keys.profiles,
      'p1',
      JSON.stringify({
        group: 'app',
        image: 'i',
        resources: { vcpus: 1, memoryMiB: 1, diskGiB: 1 },
      }),
    );
    const raw = await state.decode(await fetchStateRaw(endpoint(), 'raw-big', 5_000));
    assert.deepEqual(raw, await state.readAll());
    assert.equal(raw.instances.length, 20_000);
  });

  it('selects the database REDIS_URL names', async () => {
    const other = server.client({ password: PASSWORD, db: 3 });
    try {
      await new FleetState(other, 'raw-db').putInstance(anInstance());
      const reply = await fetchStateRaw(endpoint({ db: 3 }), 'raw-db', 5_000);
      assert.deepEqual((await new FleetState(other, 'raw-db').decode(reply)).instances, [
        anInstance(),
      ]);
      const db0 = await fetchStateRaw(endpoint(), 'raw-db', 5_000);
      assert.equal(db0.records.starts.length, 0, 'db 0 has none');
    } finally {
      other.disconnect();
    }
  });

  it('rejects a wrong password without quoting it, and an error reply', async () => {
    await assert.rejects(fetchStateRaw(endpoint({ password: 'nope' }), 'raw-a', 5_000), (e) => {
      assert.ok(e instanceof Error);
      assert.ok(!e.message.includes('nope'));
      return true;
    });
    await redis.set('not-a-hash', 'x');
    await assert.rejects(
      rawTransaction(endpoint(), [['HVALS', 'not-a-hash']], 5_000),
      /EXEC was refused/,
    );
  });

  it('rejects when the server closes the connection or never connects', async () => {
    const closing = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => closing.listen(0, '127.0.0.1', resolve));
    const address = closing.address();
    try {
      assert.ok(address && typeof address === 'object');
      await assert.rejects(
        fetchStateRaw({ host: '127.0.0.1', port: address.port }, 'raw-a', 5_000),
        /closed|failed/,
      );
      await assert.rejects(fetchStateRaw({ path: `${server.dir}/none.sock` }, 'raw-a', 5_000));
    } finally {
      closing.close();
    }
  });

  it('is abandoned when asked to: the socket is closed, and it rejects', async () => {
    const abandon = new AbortController();
    const abandoned = fetchStateRaw(endpoint(), 'raw-a', 5_000, abandon.signal);
    abandon.abort();
    await assert.rejects(abandoned, /abandoned/);
  });
});
