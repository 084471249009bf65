// Debian's syntax for package names and versions, against dpkg's own judgement
// (`dpkg --validate-version`, `--validate-pkgname`) and every package this machine has installed.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { isDebianPackageName, isDebianVersion } from '../../src/patching/debian-syntax.js';

const dpkgAccepts = (option: string, value: string) =>
  spawnSync('dpkg', [option, '--', value]).status === 0;

const installed = execFileSync('dpkg-query', [
  '-W',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's format, not a template
  '-f=${binary:Package}\\t${Version}\\n',
])
  .toString()
  .trim()
  .split('\n')
  .map((l) => l.split('\t') as [string, string]);

describe('Debian syntax', () => {
  it('versions: as dpkg --validate-version judges them', () => {
    const table = [
      '1.0-2',
      '1:1.0-2',
      '1.0~rc1-1',
      '3.0.17-1~deb12u2',
      '2.36-9+deb12u7',
      '0',
      '1.0--1',
      '1.0-2-',
      'a1.0',
      '1.0 x',
      '$(touch /tmp/x)',
      '1:',
      ':1.0',
      '1.0:1-1',
      '1.0_1',
      '1.0-a:b',
      '-1.0',
      '1.0-',
      '',
      '1.0-2\n',
    ];
    for (const v of table) {
      assert.equal(isDebianVersion(v), dpkgAccepts('--validate-version', v), JSON.stringify(v));
    }
  });

  it('every version and name installed on this machine passes', () => {
    assert.ok(installed.length > 100);
    for (const [name, version] of installed) {
      assert.ok(isDebianVersion(version), `${name} ${version}`);
      assert.ok(isDebianPackageName(name), name);
    }
  });

  it('names: Policy §5.6.1, stricter than dpkg, with an arch qualifier; never an option or a pattern', () => {
    for (const name of ['libc6', 'g++', '0ad', 'x.y', 'libc6:amd64', 'vfleet-demo-tls']) {
      assert.ok(isDebianPackageName(name), name);
    }
    // dpkg accepts these; Debian Policy does not (one character, upper case, underscore).
    for (const name of ['a', 'Foo', 'foo_bar']) {
      assert.equal(dpkgAccepts('--validate-pkgname', name), true, name);
      assert.equal(isDebianPackageName(name), false, name);
    }
    for (const name of [
      '-oAPT::Get=1',
      '?installed',
      '~nfoo',
      'foo*',
      'foo=1',
      'foo bar',
      'libc6:',
      ':amd64',
      'x'.repeat(200),
    ]) {
      assert.equal(isDebianPackageName(name), false, name);
    }
  });
});
