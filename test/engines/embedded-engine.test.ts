import { EmbeddedEngine, setHostDown } from '../../src/engines/embedded/embedded-engine.js';
import type { Host } from '../../src/model/fleet.js';
import { aModelHost } from '../helpers/hosts.js';
import { startRedisServer } from '../helpers/redis.js';
import { engineConformance } from './conformance.js';

const host = (name: string): Host =>
  aModelHost({
    name,
    cpu: { sockets: 1, coresPerSocket: 8, threadsPerCore: 2 },
    memoryMiB: 16384,
    diskGiB: 100,
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
