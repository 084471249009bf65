// A spec host as the model has it (normalized: every default filled in), for tests that build
// engines and transports directly. One place, so a new Host field is added once.
import type { Host } from '../../src/model/fleet.js';

export function aModelHost(overrides: Partial<Host> = {}): Host {
  return {
    name: 'hv-01',
    engine: 'embedded',
    dataDir: '/var/lib/vfleet',
    labels: {},
    cpu: { sockets: 1, coresPerSocket: 2, threadsPerCore: 1 },
    memoryMiB: 4096,
    diskGiB: 20,
    os: { family: 'debian', release: '12', arch: 'x86_64' },
    runs: ['vm', 'container'],
    drain: false,
    overcommit: { cpu: 1, memory: 1 },
    licenses: [],
    patchBaseline: undefined,
    packages: {},
    packagesFrom: undefined,
    ...overrides,
  };
}
