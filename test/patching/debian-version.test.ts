// Debian version comparison, against dpkg's own two implementations on thousands of real version
// strings from this machine's apt lists (and dpkg's own database), plus the classics: the
// `dpkg --compare-versions` binary (C) on a thousand pairs, and dpkg's Perl `Dpkg::Version`
// (libdpkg-perl, what dpkg-dev's tools compare with) on every pair, in one process — a fork of
// dpkg per pair took 7 ms of CPU, 37 s for the 5,200 pairs.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
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

/** Whether `dpkg --compare-versions a relation b` holds, for each [a, relation, b]; one dash. */
async function dpkgHolds(triples: ReadonlyArray<readonly [string, string, string]>) {
  const script =
    'while read -r a r b; do if dpkg --compare-versions "$a" "$r" "$b"; then echo y; else echo n; fi; done';
  const child = spawn('dash', ['-c', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (chunk) => {
    out += chunk;
  });
  const [[code]] = await Promise.all([
    once(child, 'close'),
    pipeline(Readable.from([`${triples.map((t) => t.join(' ')).join('\n')}\n`]), child.stdin),
  ]);
  assert.equal(code, 0);
  return out
    .trim()
    .split('\n')
    .map((l) => l === 'y');
}

/** Dpkg::Version's verdict (lt, eq, gt) on each pair, from one perl process. */
async function perlVerdicts(pairs: ReadonlyArray<readonly [string, string]>): Promise<string[]> {
  const script =
    'use Dpkg::Version; $| = 1; while (<STDIN>) { chomp; my ($a, $b) = split / /; my $c = version_compare($a, $b); print $c < 0 ? "lt" : $c > 0 ? "gt" : "eq", "\\n"; }';
  const child = spawn('perl', ['-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (chunk) => {
    out += chunk;
  });
  const [[code]] = await Promise.all([
    once(child, 'close'),
    pipeline(Readable.from([`${pairs.map((p) => p.join(' ')).join('\n')}\n`]), child.stdin),
  ]);
  assert.equal(code, 0, 'perl with Dpkg::Version (libdpkg-perl) ran');
  return out.trim().split('\n');
}

/** dpkg's own verdict on a pair, for the message of a disagreement. */
function dpkgVerdict(a: string, b: string): string {
  const holds = (r: string) => spawnSync('dpkg', ['--compare-versions', a, r, b]).status === 0;
  return holds('lt') ? 'lt' : holds('eq') ? 'eq' : 'gt';
}

describe('compareDebianVersions agrees with dpkg --compare-versions', () => {
  it('with Dpkg::Version on at least 5,000 pairs of real version strings, and with the dpkg binary on 1,000 of them', async (t) => {
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
    // Every pair against Dpkg::Version.
    const ours = pairs.map(([a, b]) => sign(compareDebianVersions(a, b)));
    const perl = await perlVerdicts(pairs);
    assert.equal(perl.length, pairs.length);
    const perlDisagreements = pairs
      .map(([a, b], i) => ({ a, b, perl: perl[i], ours: ours[i] }))
      .filter((d) => d.perl !== d.ours);
    assert.deepEqual(
      perlDisagreements.slice(0, 5),
      [],
      `${perlDisagreements.length} pairs disagree with Dpkg::Version, the first 5 shown`,
    );
    // Every fifth pair (neighbours and spread alike) against the dpkg binary. Its lt, eq and gt
    // exclude each other, so one `dpkg --compare-versions a OURS b` per pair says whether dpkg
    // agrees; dpkg's own verdict is asked for the pairs it disagrees on. Two shells share the
    // pairs; versions are passed as quoted arguments, never code.
    const triples = pairs
      .map(([a, b], i) => [a, ours[i] as string, b] as const)
      .filter((_, i) => i % 5 === 0);
    const half = Math.ceil(triples.length / 2);
    const holds = (
      await Promise.all([dpkgHolds(triples.slice(0, half)), dpkgHolds(triples.slice(half))])
    ).flat();
    assert.equal(holds.length, triples.length);
    const disagreeing = triples.filter((_, i) => !holds[i]);
    const disagreements = disagreeing
      .slice(0, 5)
      .map(([a, ours, b]) => ({ a, b, dpkg: dpkgVerdict(a, b), ours }));
    assert.deepEqual(disagreements, [], `${disagreeing.length} pairs disagree, the first 5 shown`);
    assert.ok(pairs.length >= 5_000 && triples.length >= 1_000);
    t.diagnostic(
      `${pairs.length} pairs from ${versions.length} real version strings agree with Dpkg::Version, ${triples.length} of them with dpkg --compare-versions`,
    );
  });
});
