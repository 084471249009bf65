import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { evaluateBaseline } from '../../src/patching/baseline.js';

const baseline = {
  appliesTo: { family: 'debian', release: '12' } as const,
  minimum: { openssl: '3.0.15-1~deb12u1', libc6: '2.36-9+deb12u7', bash: '5.2.15-2+b7' },
};
const debian12 = { family: 'debian', release: '12', arch: 'x86_64' };

describe('evaluateBaseline', () => {
  it('classifies each package: compliant, outdated (dpkg order), missing', () => {
    const result = evaluateBaseline(baseline, debian12, {
      openssl: '3.0.13-1~deb12u1', // below: 13 < 15
      'libc6:amd64': '2.36-9+deb12u10', // above: u10 > u7 numerically; multi-arch name found
      zlib1g: '1:1.2.13.dfsg-1',
    });
    assert.deepEqual(result, {
      applicable: true,
      packages: [
        {
          package: 'bash',
          installedAs: null,
          installed: null,
          required: '5.2.15-2+b7',
          status: 'missing',
        },
        {
          package: 'libc6',
          installedAs: 'libc6:amd64',
          installed: '2.36-9+deb12u10',
          required: '2.36-9+deb12u7',
          status: 'compliant',
        },
        {
          package: 'openssl',
          installedAs: 'openssl',
          installed: '3.0.13-1~deb12u1',
          required: '3.0.15-1~deb12u1',
          status: 'outdated',
        },
      ],
    });
  });

  it('a version equal to the minimum is compliant; a ~ pre-release of it is not', () => {
    const at = evaluateBaseline(baseline, debian12, {
      openssl: '3.0.15-1~deb12u1',
      libc6: '2.36-9+deb12u7',
      bash: '5.2.15-2+b7',
    });
    assert.ok(at.applicable && at.packages.every((p) => p.status === 'compliant'));
    const pre = evaluateBaseline({ ...baseline, minimum: { openssl: '3.0.15-1' } }, debian12, {
      openssl: '3.0.15-1~deb12u1',
    });
    assert.ok(pre.applicable && pre.packages[0]?.status === 'outdated');
  });

  it('another OS, release or arch is not-applicable', () => {
    assert.deepEqual(
      evaluateBaseline(baseline, { family: 'rhel', release: '9.4', arch: 'x86_64' }, {}),
      { applicable: false },
    );
    assert.deepEqual(
      evaluateBaseline(baseline, { family: 'debian', release: '11', arch: 'x86_64' }, {}),
      { applicable: false },
    );
    const armOnly = { ...baseline, appliesTo: { family: 'debian', arch: 'aarch64' } as const };
    assert.deepEqual(evaluateBaseline(armOnly, debian12, {}), { applicable: false });
  });
});
