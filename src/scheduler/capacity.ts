// What a host offers and what an instance asks, in the integer units the scheduler compares:
// CPU in milli-vCPUs (overcommit ratios may be fractional), memory in MiB, disk in GiB.
import type { Host, Image, InstanceGroup } from '../model/fleet.js';

export interface Amounts {
  cpu: number;
  memory: number;
  disk: number;
}

/** One amount per host and resource, in the units above. */
export interface HostAmounts {
  readonly cpu: Float64Array;
  readonly memory: Float64Array;
  readonly disk: Float64Array;
}

export function hostAmounts(hosts: number): HostAmounts {
  return {
    cpu: new Float64Array(hosts),
    memory: new Float64Array(hosts),
    disk: new Float64Array(hosts),
  };
}

/** Every host's allocatable capacity. */
export function allocatableOf(hosts: readonly Host[]): HostAmounts {
  const amounts = hostAmounts(hosts.length);
  hosts.forEach((host, h) => {
    const a = allocatable(host);
    amounts.cpu[h] = a.cpu;
    amounts.memory[h] = a.memory;
    amounts.disk[h] = a.disk;
  });
  return amounts;
}

/** Allocatable capacity: hardware threads × cpu overcommit, memory × memory overcommit, disk. */
export function allocatable(host: Host): Amounts {
  const threads = host.cpu.sockets * host.cpu.coresPerSocket * host.cpu.threadsPerCore;
  return {
    cpu: Math.floor(threads * host.overcommit.cpu * 1000),
    memory: Math.floor(host.memoryMiB * host.overcommit.memory),
    disk: host.diskGiB,
  };
}

/**
 * QEMU's own memory per VM, on top of the guest's: the process, device emulation, the vCPU
 * threads' stacks and the page tables that map guest memory. We reserve
 *   64 MiB + 8 MiB per vCPU + 1/64 of guest memory (≈1.6 %, rounded up),
 * e.g. 82 MiB for a 1-vCPU 1 GiB guest, 224 MiB for 8 vCPUs and 16 GiB: the same order as
 * VMware's published per-VM overhead table and what `ps` shows of an idle qemu-system-x86_64.
 * Containers share the host kernel and pay nothing beyond their cgroup limit.
 */
export function vmMemoryOverheadMiB(vcpus: number, memoryMiB: number): number {
  return 64 + 8 * vcpus + Math.ceil(memoryMiB / 64);
}

export function demandOf(
  group: Pick<InstanceGroup, 'resources'>,
  image: Pick<Image, 'kind'> | undefined,
): Amounts {
  const { vcpus, memoryMiB, diskGiB } = group.resources;
  const overhead = image?.kind === 'vm' ? vmMemoryOverheadMiB(vcpus, memoryMiB) : 0;
  return { cpu: vcpus * 1000, memory: memoryMiB + overhead, disk: diskGiB };
}
