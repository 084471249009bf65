import { EmbeddedEngine, setHostDown } from '../../src/engines/embedded/embedded-engine.js';
import type { Host } from '../../src/model/fleet.js';
import { startRedisServer } from '../helpers/redis.js';
import { engineConformance } from './conformance.js';

const host = (name: string): Host => ({
  name,
  engine: 'embedded',
  dataDir: '/var/lib/vfleet',
  labels: {},
  cpu: { sockets: 1, coresPerSocket: 8, threadsPerCore: 2 },
  memoryMiB: 16384,
  diskGiB: 100,
  os: { family: 'debian', release: '12', arch: 'x86_64' },
  runs: ['vm', 'container'],
  overcommit: { cpu: 1, memory: 1 },
  licenses: [],
  patchBaseline: undefined,
  packages: {},
  packagesFrom: undefined,
});

engineConformance('embedded', async () => {
  const server = await startRedisServer();
  const redis = server.client();
  const options = { bootLatencyMs: 1 };
  return {
    a: new EmbeddedEngine(redis, 'conformance', host('emu-a'), options),
    b: new EmbeddedEngine(redis, 'conformance', host('emu-b'), options),
    fail: (name) => setHostDown(redis, 'conformance', name, true),
    recover: (name) => setHostDown(redis, 'conformance', name, false),
    close: () => server.stop(),
  };
});
