// Debian version comparison, against the real `dpkg --compare-versions` on thousands of real
// version strings from this machine's apt lists (and dpkg's own database), plus the classics.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { compareDebianVersions } from '../../src/patching/debian-version.js';

const sign = (n: number) => (n < 0 ? 'lt' : n > 0 ? 'gt' : 'eq');

describe('compareDebianVersions: the classic cases', () => {
  const cases: Array<[string, string, 'lt' | 'eq' | 'gt']> = [
    ['1.0', '1.0', 'eq'],
    ['1.0~rc1', '1.0', 'lt'],
    ['1.0~~', '1.0~', 'lt'],
    ['1.0~', '1.0', 'lt'],
    ['1.0', '1.0+b1', 'lt'],
    ['1.0a', '1.0+', 'lt'],
    ['1:0.1', '2.0', 'gt'],
    ['0:1.0', '1.0', 'eq'],
    ['1.0-1', '1.0-0', 'gt'],
    ['1.0', '1.0-0', 'eq'],
    ['1.10', '1.9', 'gt'],
    ['1.001', '1.1', 'eq'],
    ['3.0.15-1~deb12u1', '3.0.15-1', 'lt'],
    ['3.0.15-1~deb12u1', '3.0.13-1~deb12u1', 'gt'],
    ['2.36-9+deb12u9', '2.36-9+deb12u10', 'lt'],
    ['1:9.2p1-2+deb12u6', '9.3p1-1', 'gt'],
    ['a', 'B', 'gt'],
    ['1.0-1a', '1.0-1+', 'lt'],
  ];
  for (const [a, b, expected] of cases) {
    it(`${a} ${expected} ${b}`, () => {
      assert.equal(sign(compareDebianVersions(a, b)), expected);
      assert.equal(
        sign(compareDebianVersions(b, a)),
        expected === 'lt' ? 'gt' : expected === 'gt' ? 'lt' : 'eq',
      );
    });
  }
});

function realVersions(): string[] {
  const fromApt = spawnSync('apt-cache', ['dumpavail'], {
    encoding: 'utf8',
    maxBuffer: 512 * 1024 * 1024,
  });
  // dpkg-query's own format string (not a template literal): its ${Version} field.
  const format = ['-f=$', '{Version}\\n'].join('');
  const fromDpkg = spawnSync('dpkg-query', ['-W', format], { encoding: 'utf8' });
  const all = `${fromApt.stdout ?? ''}\n`
    .split('\n')
    .filter((l) => l.startsWith('Version: '))
    .map((l) => l.slice(9).trim());
  all.push(...(fromDpkg.stdout ?? '').split('\n').map((l) => l.trim()));
  return [...new Set(all.filter((v) => /^[0-9A-Za-z.+~:-]+$/.test(v)))].sort();
}

describe('compareDebianVersions agrees with dpkg --compare-versions', () => {
  it('on at least 5,000 pairs of real version strings', (t) => {
    const versions = realVersions();
    if (versions.length < 100) {
      t.skip(`only ${versions.length} version strings on this machine (no apt lists)`);
      return;
    }
    // Pairs that exercise the algorithm: neighbours in sorted order (close versions of the same
    // shape) and a seeded spread of unrelated ones.
    const pairs: Array<[string, string]> = [];
    for (
      let i = 0;
      i + 1 < versions.length && pairs.length < 3_000;
      i += Math.max(1, Math.floor(versions.length / 3_000))
    ) {
      pairs.push([versions[i] as string, versions[i + 1] as string]);
    }
    let seed = 12345;
    const next = () => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % versions.length;
    };
    while (pairs.length < 5_200)
      pairs.push([versions[next()] as string, versions[next()] as string]);
    // One shell runs dpkg for every pair; versions are passed as quoted arguments, never code.
    const script =
      'while IFS=" " read -r a b; do if dpkg --compare-versions "$a" lt "$b"; then echo lt; elif dpkg --compare-versions "$a" eq "$b"; then echo eq; else echo gt; fi; done';
    const run = spawnSync('bash', ['-c', script], {
      input: `${pairs.map(([a, b]) => `${a} ${b}`).join('\n')}\n`,
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
    });
    const dpkg = run.stdout.trim().split('\n');
    assert.equal(dpkg.length, pairs.length);
    const disagreements = pairs
      .map(([a, b], i) => ({ a, b, dpkg: dpkg[i], ours: sign(compareDebianVersions(a, b)) }))
      .filter((p) => p.dpkg !== p.ours);
    assert.deepEqual(disagreements.slice(0, 5), []);
    assert.ok(pairs.length >= 5_000);
    t.diagnostic(
      `${pairs.length} pairs from ${versions.length} real version strings agree with dpkg`,
    );
  });
});
