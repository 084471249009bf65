// The transport a spec host is driven through: its engine says which. The embedded engine has
// none (its hosts live in Redis), so asking for one is a programming error.
import type { Host } from '../model/fleet.js';
import { LocalTransport } from './local-transport.js';
import { SshTransport, type SshTransportOptions } from './ssh-transport.js';
import type { Transport } from './transport.js';

export function openTransport(host: Host, options: SshTransportOptions = {}): Transport {
  switch (host.engine) {
    case 'local':
      return new LocalTransport(host.name);
    case 'ssh':
      return new SshTransport(host, options);
    case 'embedded':
      throw new Error(`openTransport: ${host.name} is an embedded host, which has no transport`);
  }
}
