// The failover arithmetic the scheduler and the failover audit share, on numbers worked by hand.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hostAmounts } from '../../src/scheduler/capacity.js';
import { FailoverScenarios } from '../../src/scheduler/failover-scenarios.js';

/** Two hosts of 4 vCPUs / 8 GiB / 100 GiB; host 1 already runs 1 vCPU / 2 GiB / 10 GiB. */
function twoHosts(): FailoverScenarios {
  const capacity = hostAmounts(2);
  const used = hostAmounts(2);
  capacity.cpu.fill(4000);
  capacity.memory.fill(8192);
  capacity.disk.fill(100);
  used.cpu[1] = 1000;
  used.memory[1] = 2048;
  used.disk[1] = 10;
  return new FailoverScenarios(capacity, used);
}

const demand = (cpu: number, memory: number, disk: number) => ({ cpu, memory, disk });

describe('FailoverScenarios', () => {
  it('a host reserves, per resource, the most any one scenario lands on it', () => {
    const s = twoHosts();
    assert.equal(s.land(1, 0, demand(1000, 1024, 5)), true);
    assert.equal(s.land(1, 0, demand(1000, 1024, 5)), true);
    // Scenario 2 lands less memory but more disk: only the disk reserve grows.
    assert.equal(s.land(1, 2, demand(500, 512, 30)), true);
    assert.equal(s.land(1, 2, demand(500, 512, 0)), false);
    assert.deepEqual([s.reserveCpu[1], s.reserveMem[1], s.reserveDisk[1]], [2000, 2048, 30]);
    assert.deepEqual([...(s.loadOn(1, 0) ?? [])], [2000, 2048, 10]);
    assert.equal(s.loadOn(0, 0), undefined);
  });

  it('a scenario fits while use + its load + the demand stays within capacity', () => {
    const s = twoHosts();
    s.land(1, 0, demand(2000, 4096, 50));
    // Host 1 in scenario 0: 1000 + 2000 of 4000 vCPU, 2048 + 4096 of 8192 MiB, 10 + 50 of 100.
    assert.equal(s.fits(1, 0, demand(1000, 2048, 40)), true);
    assert.equal(s.fits(1, 0, demand(1001, 0, 0)), false);
    assert.equal(s.fits(1, 0, demand(0, 2049, 0)), false);
    assert.equal(s.fits(1, 0, demand(0, 0, 41)), false);
    // Another scenario does not see scenario 0's load.
    assert.equal(s.fits(1, 3, demand(3000, 6144, 90)), true);
  });

  it('names the resources a scenario overloads, with what it needs and what is free', () => {
    const s = twoHosts();
    s.land(1, 0, demand(3000, 8192, 90));
    assert.deepEqual(s.shortfalls(1, 0), [{ resource: 'memory', needed: 8192, free: 6144 }]);
    s.land(1, 0, demand(1, 0, 1));
    assert.deepEqual(s.shortfalls(1, 0), [
      { resource: 'cpu', needed: 3001, free: 3000 },
      { resource: 'memory', needed: 8192, free: 6144 },
      { resource: 'disk', needed: 91, free: 90 },
    ]);
    assert.deepEqual(s.shortfalls(0, 0), []);
  });
});
