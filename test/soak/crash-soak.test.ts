// The crash soak, three rounds of it (one of each fault) on a small generated fleet: Redis, the
// apply and a worker killed with SIGKILL mid-apply, and each time the next apply converges with
// every instance exactly once and no stack trace printed. `npm run soak:crash` runs twenty rounds
// on 5,000 instances.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runCrashSoak } from '../../scripts/soak-crash.js';

describe('crash soak (three rounds)', () => {
  it('Redis, the apply and a worker killed mid-apply: the next apply converges, every instance once', {
    timeout: 600_000,
  }, async () => {
    const lines: string[] = [];
    const rounds = await runCrashSoak({
      seed: 3,
      rounds: 3,
      hosts: 10,
      instances: 300,
      faults: ['redis', 'apply', 'worker'],
      workerLockMs: 3_000,
      log: (l) => lines.push(l),
    });
    assert.equal(rounds.length, 3, lines.join('\n'));
    for (const r of rounds) {
      assert.deepEqual(r.problems, [], `round ${r.round} (${r.fault}): ${lines.join('\n')}`);
      assert.equal(r.doubled + r.missing + r.extra, 0);
      assert.ok(r.instances > 0);
    }
    // A fault that never landed would make the round prove nothing.
    assert.ok(
      rounds.every((r) => r.hit),
      lines.join('\n'),
    );
  });
});
