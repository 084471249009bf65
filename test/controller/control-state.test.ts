// The controller's Redis keys against a real redis-server: the leader lease (one holder, a new
// fencing token per new leader, taken over after it expires, never renewed or released by a
// deposed holder), and the emulated agents' tick (lease renewal, the watchdog stopping a
// partitioned host's instances a ttl after its last renewal on its own clock, a crashed host's
// instances stopping with it, a returning host destroying the copies that run elsewhere now).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { EmbeddedEngine } from '../../src/engines/embedded/embedded-engine.js';
import { embeddedAgentTick } from '../../src/engines/embedded/emulated-agent.js';
import { ControlState } from '../../src/state/control-state.js';
import { FleetState } from '../../src/state/fleet-state.js';
import { aModelHost } from '../helpers/hosts.js';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';

let server: TestRedisServer;
let redis: Redis;
let fleets = 0;
const nextFleet = () => `ctl-${++fleets}`;
const policy = { ttlMs: 1_000, graceMs: 500 };

before(async () => {
  server = await startRedisServer();
  redis = server.client();
});

after(async () => {
  await server.stop();
});

const holder = (id: string) => ({ id, pid: 1, host: 'test', since: 0, policy });

/** Polls `check` until true, at most `deadlineMs` (a bound for a loaded machine). */
async function until(check: () => Promise<boolean>, deadlineMs = 10_000): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('condition not met before the deadline');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('the leader lease', () => {
  it('has one holder; a standby is refused, and takes over with a newer token once it expires', async () => {
    const fleet = nextFleet();
    const control = new ControlState(redis, fleet);
    // Leases long enough that a loaded machine cannot let one lapse between two steps; the
    // lapse itself is made on the server below.
    const TTL = 60_000;
    const a = await control.takeLeadership(holder('a'), TTL);
    assert.equal(a.leader, true);
    const tokenA = a.holder?.token as number;
    const b = await control.takeLeadership(holder('b'), TTL);
    assert.equal(b.leader, false);
    assert.equal(b.holder?.id, 'a');
    // Taking again is renewing for the holder, with the same token.
    assert.equal((await control.takeLeadership(holder('a'), TTL)).holder?.token, tokenA);
    assert.equal(await control.isLeaderToken(tokenA), true);
    // a stops renewing (SIGKILL): its lease runs out on the server (made to, here), b takes it.
    await redis.pexpire(`vfleet:{${fleet}}:leader`, 1);
    await until(async () => (await control.takeLeadership(holder('b'), TTL)).leader);
    const tokenB = (await control.leader())?.token as number;
    assert.ok(tokenB > tokenA);
    // The deposed holder can neither renew nor release the new one's lease, and its token is dead.
    assert.equal(await control.renewLeadership('a', tokenA, TTL), false);
    assert.equal(await control.releaseLeadership('a', tokenA), false);
    assert.equal(await control.isLeaderToken(tokenA), false);
    assert.equal((await control.leader())?.id, 'b');
    // A clean stop releases at once: the next taker need not wait.
    assert.equal(await control.releaseLeadership('b', tokenB), true);
    const c = await control.takeLeadership(holder('c'), TTL);
    assert.equal(c.leader, true);
    assert.ok((c.holder?.token as number) > tokenB);
  });

  it('a job of a deposed leader is refused by the state a worker asks', async () => {
    const fleet = nextFleet();
    const control = new ControlState(redis, fleet);
    const state = new FleetState(redis, fleet);
    const first = (await control.takeLeadership(holder('a'), 60_000)).holder?.token as number;
    assert.equal(await state.isLeaderToken(first), true);
    await control.releaseLeadership('a', first);
    assert.equal(await state.isLeaderToken(first), false);
    const second = (await control.takeLeadership(holder('b'), 60_000)).holder?.token as number;
    assert.equal(await state.isLeaderToken(first), false);
    assert.equal(await state.isLeaderToken(second), true);
  });
});

describe('the emulated agents', () => {
  const request = (name: string, generation = 1) => ({
    name,
    group: name.replace(/-[0-9]+$/, ''),
    generation,
    image: {
      name: 'debian-12',
      kind: 'container' as const,
      os: { family: 'debian', release: '12', arch: 'x86_64' },
      packages: {},
    },
    resources: { vcpus: 1, memoryMiB: 512, diskGiB: 1 },
  });

  async function twoHosts() {
    const fleet = nextFleet();
    const a = new EmbeddedEngine(redis, fleet, aModelHost({ name: 'emu-a' }), { bootLatencyMs: 0 });
    const b = new EmbeddedEngine(redis, fleet, aModelHost({ name: 'emu-b' }), { bootLatencyMs: 0 });
    await a.create(request('web-0'));
    await a.create(request('web-1'));
    return {
      fleet,
      a,
      b,
      control: new ControlState(redis, fleet),
      state: new FleetState(redis, fleet),
    };
  }
  const statuses = async (engine: EmbeddedEngine) =>
    Object.fromEntries((await engine.list()).map((i) => [i.instance, i.status]));

  it('renew a healthy host’s lease on every tick', async () => {
    const { fleet, control } = await twoHosts();
    await embeddedAgentTick(redis, fleet, ['emu-a', 'emu-b'], 1_000, policy.ttlMs);
    await embeddedAgentTick(redis, fleet, ['emu-a', 'emu-b'], 2_000, policy.ttlMs);
    const leases = await control.leases();
    assert.deepEqual(leases.get('emu-a'), { seq: 2, at: 2_000, by: 'emulated-agent' });
    assert.equal(leases.get('emu-b')?.seq, 2);
  });

  it('stop a partitioned host’s instances a ttl after its last renewal, on the host’s own clock', async () => {
    const { fleet, a } = await twoHosts();
    const tick = (now: number) => embeddedAgentTick(redis, fleet, ['emu-a'], now, policy.ttlMs);
    await tick(10_000);
    await a.inject('partition');
    assert.equal((await tick(10_500)).get('emu-a')?.state, 'partitioned');
    assert.equal((await tick(10_999)).get('emu-a')?.state, 'partitioned');
    // Healed before the ttl: nothing was stopped, and the next tick renews (at 10,999).
    await a.inject('recover');
    assert.deepEqual(await statuses(a), { 'web-0': 'running', 'web-1': 'running' });
    assert.equal((await tick(10_999)).get('emu-a')?.state, 'ok');
    await a.inject('partition');
    assert.deepEqual(
      (await tick(11_998)).get('emu-a'),
      { state: 'partitioned', instances: [] },
      'a ttl after 10,999 is 11,999',
    );
    const fired = (await tick(11_999)).get('emu-a');
    assert.equal(fired?.state, 'self-fenced');
    assert.deepEqual([...(fired?.instances ?? [])].sort(), ['web-0', 'web-1']);
    // Once: the next tick reports the partition only.
    assert.equal((await tick(21_000)).get('emu-a')?.state, 'partitioned');
    await a.inject('recover');
    assert.deepEqual(await statuses(a), { 'web-0': 'stopped', 'web-1': 'stopped' });
  });

  it('a crashed host’s instances stop with it; back, it destroys the copies that run elsewhere now', async () => {
    const { fleet, a, b, state } = await twoHosts();
    await embeddedAgentTick(redis, fleet, ['emu-a', 'emu-b'], 1_000, policy.ttlMs);
    await a.inject('fail');
    await a.inject('recover');
    await a.inject('fail');
    // The controller restarted web-0 on emu-b at generation 2 and recorded it; web-1 stays recorded on emu-a.
    await b.create(request('web-0', 2));
    const record = (name: string, host: string, generation: number) => ({
      instance: name,
      group: 'web',
      host,
      generation,
      status: 'running' as const,
      image: 'debian-12',
      resources: { vcpus: 1, memoryMiB: 512, diskGiB: 1 },
      failoverHost: null,
      packages: {},
    });
    await state.putInstance(record('web-0', 'emu-b', 2));
    await state.putInstance(record('web-1', 'emu-a', 1));
    assert.equal(
      (await embeddedAgentTick(redis, fleet, ['emu-a'], 5_000, policy.ttlMs)).get('emu-a')?.state,
      'failed',
    );
    await a.inject('recover');
    const back = (await embeddedAgentTick(redis, fleet, ['emu-a'], 6_000, policy.ttlMs)).get(
      'emu-a',
    );
    assert.deepEqual(back, { state: 'ok', instances: ['web-0'] });
    // Not resumed: web-1 stays stopped until a plan starts it; web-0 is gone from emu-a.
    assert.deepEqual(await statuses(a), { 'web-1': 'stopped' });
    assert.deepEqual(await statuses(b), { 'web-0': 'running' });
    // Done once: a later tick destroys nothing.
    const later = (await embeddedAgentTick(redis, fleet, ['emu-a'], 7_000, policy.ttlMs)).get(
      'emu-a',
    );
    assert.deepEqual(later, { state: 'ok', instances: [] });
  });
});
