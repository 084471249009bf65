import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { LocalTransport } from '../../src/transport/local-transport.js';
import { transportContract } from './contract.js';

transportContract('local', async () => {
  const dir = mkdtempSync(`${tmpdir()}/vfleet-test-local-`);
  return {
    a: new LocalTransport('local-a'),
    b: new LocalTransport('local-b'),
    dir,
    close: async () => rmSync(dir, { recursive: true, force: true }),
  };
});
