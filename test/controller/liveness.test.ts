// The liveness rules (model/host-health.ts) as a table, and the controller's tracker
// (controller/liveness.ts) against a virtual clock: ages are measured from when the controller
// saw a lease change, so a host clock skewed by ±5 s changes nothing.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LivenessTracker } from '../../src/controller/liveness.js';
import {
  healthOf,
  mayRestartElsewhere,
  restartAfterMs,
  watchdogFires,
} from '../../src/model/host-health.js';

const policy = { ttlMs: 10_000, graceMs: 5_000 };
const plain = { fenced: false, draining: false };

describe('host health rules', () => {
  const cases: Array<[number, { fenced: boolean; draining: boolean }, string]> = [
    [0, plain, 'ok'],
    [10_000, plain, 'ok'],
    [10_001, plain, 'suspect'],
    [15_000, plain, 'suspect'],
    [15_001, plain, 'lost'],
    [Number.POSITIVE_INFINITY, plain, 'lost'],
    [0, { fenced: false, draining: true }, 'draining'],
    [12_000, { fenced: false, draining: true }, 'suspect'],
    [0, { fenced: true, draining: false }, 'fenced'],
  ];
  for (const [age, host, want] of cases) {
    it(`lease age ${age} ms, ${JSON.stringify(host)} → ${want}`, () => {
      assert.equal(healthOf(age, policy, host), want);
    });
  }

  it('a lost host may restart elsewhere only two ttls after its lease expired, and only if it self-fences', () => {
    assert.equal(restartAfterMs(policy), 30_000);
    const selfFencing = { ...plain, selfFences: true };
    assert.equal(mayRestartElsewhere(29_999, policy, selfFencing), false);
    assert.equal(mayRestartElsewhere(30_000, policy, selfFencing), true);
    // A host without a watchdog waits for an operator, however old its lease.
    assert.equal(mayRestartElsewhere(1e9, policy, { ...plain, selfFences: false }), false);
    assert.equal(
      mayRestartElsewhere(0, policy, { fenced: true, draining: false, selfFences: false }),
      true,
    );
  });

  it('the watchdog fires one ttl after the last renewal, two ttls before a restart may happen', () => {
    assert.equal(watchdogFires(9_999, policy), false);
    assert.equal(watchdogFires(10_000, policy), true);
    assert.equal(restartAfterMs(policy) - policy.ttlMs, 2 * policy.ttlMs);
  });
});

describe('the liveness tracker', () => {
  const hosts = [
    { name: 'a', fenced: false, draining: false, selfFences: true },
    { name: 'b', fenced: false, draining: false, selfFences: true },
  ];

  it('goes ok → suspect → lost → restartable as a lease stops changing, and back when it changes', () => {
    const tracker = new LivenessTracker(policy);
    let now = 1_000_000;
    let seqA = 1;
    const log: string[] = [];
    for (let t = 0; t <= 40; t++) {
      if (t < 5 || t >= 38) seqA++; // a renews until t=4, stops, comes back at t=38
      const leases = new Map([
        ['a', seqA],
        ['b', 100 + t],
      ]);
      for (const c of tracker.observe(now, hosts, leases)) {
        log.push(`${t}:${c.host}:${c.from}→${c.to}`);
      }
      if (t === 33) assert.equal(tracker.get('a')?.restartable, false);
      if (t === 34) assert.equal(tracker.get('a')?.restartable, true);
      now += 1_000;
    }
    assert.deepEqual(log, [
      '0:a:null→ok',
      '0:b:null→ok',
      '15:a:ok→suspect',
      '20:a:suspect→lost',
      '38:a:lost→ok',
    ]);
  });

  it('measures ages on its own clock: a host clock 5 s ahead or behind changes nothing', () => {
    // The lease's `at` is never read; only whether `seq` changed.
    const a = new LivenessTracker(policy);
    const b = new LivenessTracker(policy);
    for (let t = 0; t < 20; t++) {
      a.observe(1_000 * t, hosts.slice(0, 1), new Map([['a', Math.min(t, 3)]]));
      b.observe(1_000 * t, hosts.slice(0, 1), new Map([['a', t < 3 ? t + 5_000 : 5_003]]));
    }
    assert.deepEqual(a.get('a'), b.get('a'));
    assert.equal(a.get('a')?.leaseAgeMs, 16_000);
  });

  it('a controller that just became leader gives every host a full ttl (reset)', () => {
    const tracker = new LivenessTracker(policy);
    const same = new Map([
      ['a', 1],
      ['b', 1],
    ]);
    tracker.observe(0, hosts, same);
    tracker.observe(50_000, hosts, same);
    assert.equal(tracker.get('a')?.health, 'lost');
    tracker.reset();
    tracker.observe(60_000, hosts, same);
    assert.equal(tracker.get('a')?.health, 'ok');
    assert.equal(tracker.get('a')?.leaseAgeMs, 0);
  });
});
