// factsDrift: what a real host reports against what the spec says of it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, it } from 'node:test';
import { factsDrift } from '../../src/engines/facts-drift.js';
import type { HostFacts } from '../../src/engines/host-engine.js';
import { kvmUsable } from '../../src/engines/real/host-facts.js';
import { LocalTransport } from '../../src/transport/local-transport.js';
import type { Transport } from '../../src/transport/transport.js';
import { realHost } from '../helpers/real-hosts.js';

const facts = (over: Partial<HostFacts> = {}): HostFacts => ({
  name: 'h',
  engine: 'local',
  cpu: { sockets: 1, coresPerSocket: 2, threadsPerCore: 1 },
  memoryMiB: 2048,
  diskGiB: 10,
  os: { family: 'debian', release: '12', arch: 'x86_64' },
  runs: ['vm', 'container'],
  kvm: true,
  sandboxLimits: { memory: true, cpu: true },
  ...over,
});

describe('factsDrift', () => {
  const host = {
    ...realHost('h', '/var/lib/vfleet'),
    os: {
      family: 'debian' as const,
      release: '12',
      arch: 'x86_64' as const,
      kernel: '6.1.0-26-amd64',
    },
  };

  it('says nothing when the host is what the spec says (memory within the kernel’s 5%)', () => {
    assert.deepEqual(factsDrift(host, facts({ memoryMiB: 1990, os: { ...host.os } })), []);
  });

  it('names each disagreement, with both values', () => {
    const warnings = factsDrift(
      host,
      facts({
        cpu: { sockets: 2, coresPerSocket: 8, threadsPerCore: 2 },
        memoryMiB: 1024,
        diskGiB: 5,
        os: { family: 'debian', release: '11', arch: 'aarch64', kernel: '5.10.0-30-arm64' },
        runs: ['container'],
        sandboxLimits: { memory: false, cpu: true },
      }),
    );
    assert.deepEqual(warnings, [
      'h: the spec says 1 socket(s) × 2 cores × 1 threads, the host has 2 × 8 × 2 (core licenses and capacity follow the spec)',
      'h: the spec says 2048 MiB of memory, the host has 1024 MiB: vfleet may place more than fits',
      'h: the spec says 10 GiB of disk, the file system of /var/lib/vfleet has 5 GiB',
      "h: the spec says debian 12 x86_64, the host runs debian 11 aarch64: sandboxes share the host's kernel and userland, so containers are placed on a wrong promise",
      'h: the spec says kernel 6.1.0-26-amd64, the host runs 5.10.0-30-arm64',
      'h: the spec lets it run VMs, but qemu-system-x86_64 is not installed there',
      'h: sandbox memory limits are not enforced (no cgroup v2 memory controller)',
    ]);
  });

  it('warns that VMs will be emulated where /dev/kvm is not usable', () => {
    assert.deepEqual(factsDrift(host, facts({ kvm: false, os: { ...host.os } })), [
      'h: /dev/kvm is not usable: VMs run under emulation (TCG), many times slower',
    ]);
  });
});

describe('kvmUsable', () => {
  // A host where /dev/kvm opens is asked whether it is PVM's KVM; this machine is one (kvm_pvm),
  // so the other answers come from a transport that answers `test` as a host would.
  const host = (kvmOpens: boolean, pvm: boolean) =>
    ({
      host: 'h',
      exec: async (argv: readonly string[]) => ({
        code: argv.includes('/dev/kvm')
          ? kvmOpens
            ? 0
            : 1
          : argv.includes('/sys/module/kvm_pvm')
            ? pvm
              ? 0
              : 1
            : 2,
        stdout: Buffer.alloc(0),
        stderr: Buffer.alloc(0),
      }),
    }) as unknown as Transport;

  it('is KVM only where /dev/kvm opens and it is not kvm_pvm', async () => {
    assert.equal(await kvmUsable(host(true, false)), true);
    assert.equal(await kvmUsable(host(true, true)), false);
    assert.equal(await kvmUsable(host(false, false)), false);
  });

  it('agrees with this machine', async () => {
    const local = new LocalTransport('here');
    const opens = spawnSync('test', ['-r', '/dev/kvm', '-a', '-w', '/dev/kvm']).status === 0;
    assert.equal(await kvmUsable(local), opens && !existsSync('/sys/module/kvm_pvm'));
  });
});
