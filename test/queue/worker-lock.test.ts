// The take-over setting: one number (VFLEET_WORKER_LOCK_MS, `vfleet worker --lock-ms`) and the
// BullMQ options derived from it. The bound itself is checked against real processes in
// test/cli/worker-takeover.test.ts; here, what the setting accepts and the arithmetic that
// worker-lock.ts argues from: lock expiry and three check intervals stay within the bound.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isVfleetError } from '../../src/model/errors.js';
import {
  DEFAULT_TAKEOVER_MS,
  takeoverMsFrom,
  workerLockOptions,
} from '../../src/queue/worker-lock.js';

describe('worker lock: the take-over bound and the BullMQ options it sets', () => {
  const accepted: Array<[string, NodeJS.ProcessEnv, string | undefined, number]> = [
    ['nothing set: the documented 30 s', {}, undefined, 30_000],
    ['an empty variable counts as unset', { VFLEET_WORKER_LOCK_MS: '' }, undefined, 30_000],
    ['the variable', { VFLEET_WORKER_LOCK_MS: '2000' }, undefined, 2_000],
    ['the flag wins over the variable', { VFLEET_WORKER_LOCK_MS: '2000' }, '5000', 5_000],
    ['the smallest', {}, '1000', 1_000],
  ];
  for (const [name, env, flag, ms] of accepted) {
    it(`accepts ${name}`, () => assert.equal(takeoverMsFrom(env, flag), ms));
  }

  const refused: Array<[string, NodeJS.ProcessEnv, string | undefined, RegExp]> = [
    ['a flag below 1 s', {}, '999', /--lock-ms takes .* not "999"/],
    ['a variable that is not a number', { VFLEET_WORKER_LOCK_MS: '30s' }, undefined, /VFLEET/],
    ['a fraction', {}, '1500.5', /--lock-ms/],
    ['a negative number', {}, '-2000', /--lock-ms/],
    ['more than a day', {}, String(25 * 3600 * 1000), /--lock-ms/],
  ];
  for (const [name, env, flag, message] of refused) {
    it(`refuses ${name} as a usage error`, () =>
      assert.throws(
        () => takeoverMsFrom(env, flag),
        (e) => isVfleetError(e) && e.code === 'usage' && message.test(e.message),
      ));
  }

  it('puts the lock expiry plus the stalled checks within the bound', () => {
    for (const bound of [1_000, 2_000, DEFAULT_TAKEOVER_MS, 3_600_000]) {
      const { lockDuration, stalledInterval } = workerLockOptions(bound);
      // A dead worker's job is moved back at the latest at its third check after the death
      // (worker-lock.ts), and never before its lock has expired.
      assert.ok(3 * stalledInterval <= bound, `3 checks within ${bound}`);
      assert.ok(lockDuration + stalledInterval <= bound, `lock and a check within ${bound}`);
      assert.ok(lockDuration <= 2 * stalledInterval, 'the lock expires by the second check');
    }
    assert.deepEqual(workerLockOptions(30_000), {
      lockDuration: 15_000,
      stalledInterval: 7_500,
      maxStalledCount: 3,
    });
  });
});
