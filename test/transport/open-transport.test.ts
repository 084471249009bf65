import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Host } from '../../src/model/fleet.js';
import { LocalTransport } from '../../src/transport/local-transport.js';
import { openTransport } from '../../src/transport/open-transport.js';
import { SshTransport } from '../../src/transport/ssh-transport.js';

const aHost = (overrides: Partial<Host>): Host => ({
  name: 'hv-01',
  engine: 'local',
  dataDir: '/var/lib/vfleet',
  labels: {},
  cpu: { sockets: 1, coresPerSocket: 2, threadsPerCore: 1 },
  memoryMiB: 4096,
  diskGiB: 20,
  os: { family: 'debian', release: '12', arch: 'x86_64' },
  runs: ['vm', 'container'],
  overcommit: { cpu: 1, memory: 1 },
  licenses: [],
  ...overrides,
});

describe('openTransport', () => {
  it('gives a local host the local transport', () => {
    const transport = openTransport(aHost({ engine: 'local' }));
    assert.ok(transport instanceof LocalTransport);
    assert.equal(transport.host, 'hv-01');
  });

  it('gives an ssh host the ssh transport, without connecting yet', async () => {
    const transport = openTransport(
      aHost({
        engine: 'ssh',
        ssh: {
          address: '127.0.0.9',
          port: 1,
          user: 'root',
          hostKey: 'SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU',
        },
      }),
    );
    assert.ok(transport instanceof SshTransport);
    await transport.close();
  });

  it('refuses an embedded host, which has no transport', () => {
    assert.throws(() => openTransport(aHost({ engine: 'embedded' })), /embedded/);
  });

  it('refuses an ssh host whose hostKey is neither a key line nor a fingerprint', () => {
    assert.throws(
      () =>
        openTransport(
          aHost({
            engine: 'ssh',
            ssh: { address: '127.0.0.9', port: 22, user: 'root', hostKey: 'ssh-ed25519 AAAA' },
          }),
        ),
      /hostKey/,
    );
  });
});
