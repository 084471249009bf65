// Worked cases from the vendors' published rules.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hostUnits, instanceUnits } from '../../src/licensing/license-units.js';
import type { LicensePool } from '../../src/model/fleet.js';

function aPool(overrides: Partial<LicensePool>): LicensePool {
  return {
    name: 'p',
    product: undefined,
    metric: 'host-core',
    entitlement: 1000,
    minimumPerHost: 0,
    minimumPerProcessor: 0,
    minimumPerInstance: 0,
    instancesPerUnit: undefined,
    coverFailover: false,
    ...overrides,
  };
}
const datacenter = aPool({ minimumPerHost: 16, minimumPerProcessor: 8 });
const standard = aPool({ minimumPerHost: 16, minimumPerProcessor: 8, instancesPerUnit: 2 });
const cpu = (sockets: number, coresPerSocket: number) => ({
  sockets,
  coresPerSocket,
  threadsPerCore: 2,
});

describe('host metrics', () => {
  const cases: Array<[string, LicensePool, ReturnType<typeof cpu>, number, number]> = [
    ['Datacenter, 2 sockets x 6 cores: 8 per processor minimum', datacenter, cpu(2, 6), 1, 16],
    ['Datacenter, 1 socket x 4 cores: 16 per host minimum', datacenter, cpu(1, 4), 1, 16],
    ['Datacenter, 2 x 16 cores: every core', datacenter, cpu(2, 16), 1, 32],
    ['Datacenter, 4 x 12 cores, 40 VMs: unlimited VMs', datacenter, cpu(4, 12), 40, 48],
    ['Standard, 16 cores, 2 VMs: one licensing', standard, cpu(2, 8), 2, 16],
    ['Standard, 16 cores, 5 VMs: three licensings', standard, cpu(2, 8), 5, 48],
    ['Standard, 2 x 12 cores, 3 VMs: two licensings of 24', standard, cpu(2, 12), 3, 48],
    [
      'Standard, counted host without VMs (failover target): one licensing',
      standard,
      cpu(2, 8),
      0,
      16,
    ],
    ['RHEL VDC, 2 sockets: one pair', aPool({ metric: 'host-socket-pair' }), cpu(2, 16), 9, 1],
    ['RHEL VDC, 3 sockets: two pairs', aPool({ metric: 'host-socket-pair' }), cpu(3, 8), 1, 2],
    ['RHEL VDC, 1 socket: one pair', aPool({ metric: 'host-socket-pair' }), cpu(1, 8), 1, 1],
    ['per host', aPool({ metric: 'host' }), cpu(8, 64), 100, 1],
  ];
  for (const [name, pool, c, instances, expected] of cases) {
    it(name, () => assert.equal(hostUnits(pool, c, instances), expected));
  }
});

describe('instance metrics', () => {
  it('instance: one per instance', () =>
    assert.equal(instanceUnits(aPool({ metric: 'instance' }), { vcpus: 16 }), 1));
  it('instance-vcpu: vCPUs, at least the per-instance minimum (SQL Server: 4)', () => {
    const sql = aPool({ metric: 'instance-vcpu', minimumPerInstance: 4 });
    assert.equal(instanceUnits(sql, { vcpus: 2 }), 4);
    assert.equal(instanceUnits(sql, { vcpus: 8 }), 8);
  });
  it('host metrics take nothing per instance', () =>
    assert.equal(instanceUnits(datacenter, { vcpus: 4 }), 0));
});
