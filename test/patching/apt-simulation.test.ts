// `apt-get -s install` output as apt 2.6 (Debian 12) writes it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseAptSimulation } from '../../src/patching/apt-simulation.js';

describe('parseAptSimulation', () => {
  it('reads upgrades, new packages, removals and downgrades; configure steps change nothing', () => {
    const output = `Reading package lists...
Building dependency tree...
The following additional packages will be installed:
  vfleet-demo-lib
The following packages will be REMOVED:
  vfleet-demo-old
2 upgraded, 1 newly installed, 1 to remove and 0 not upgraded.
Remv vfleet-demo-old [0.9-1]
Inst vfleet-demo-broken [1.0-1] (1.0-2 127.0.0.1 [all])
Inst vfleet-demo-lib (1.0-1 127.0.0.1 [all])
Inst vfleet-demo-tls [1.0-1] (1.0-2 127.0.0.1 [all])
Inst libssl3:i386 [3.0.17-1~deb12u2] (3.0.15-1~deb12u1 Debian:12.11/stable [i386]) []
Purg vfleet-demo-gone
Conf vfleet-demo-broken (1.0-2 127.0.0.1 [all])
Conf vfleet-demo-lib (1.0-1 127.0.0.1 [all])
Conf vfleet-demo-tls (1.0-2 127.0.0.1 [all])
`;
    assert.deepEqual(parseAptSimulation(output), {
      installs: [
        { package: 'vfleet-demo-broken', from: '1.0-1', to: '1.0-2' },
        { package: 'vfleet-demo-lib', from: null, to: '1.0-1' },
        { package: 'vfleet-demo-tls', from: '1.0-1', to: '1.0-2' },
        { package: 'libssl3:i386', from: '3.0.17-1~deb12u2', to: '3.0.15-1~deb12u1' },
      ],
      downgrades: [{ package: 'libssl3:i386', from: '3.0.17-1~deb12u2', to: '3.0.15-1~deb12u1' }],
      removals: [
        { package: 'vfleet-demo-old', from: '0.9-1' },
        { package: 'vfleet-demo-gone', from: null },
      ],
    });
  });

  it('nothing to do: nothing read', () => {
    const output = `Reading package lists...
Building dependency tree...
vfleet-demo-tls is already the newest version (1.0-2).
0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.
`;
    assert.deepEqual(parseAptSimulation(output), { installs: [], downgrades: [], removals: [] });
  });
});
