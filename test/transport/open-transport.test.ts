import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Host } from '../../src/model/fleet.js';
import { LocalTransport } from '../../src/transport/local-transport.js';
import { openTransport } from '../../src/transport/open-transport.js';
import { SshTransport } from '../../src/transport/ssh-transport.js';
import { aModelHost } from '../helpers/hosts.js';

const aHost = (overrides: Partial<Host>): Host => aModelHost({ engine: 'local', ...overrides });

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
