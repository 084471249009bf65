// `vfleet validate` as a user runs it: the real launcher in a child process, exit codes and
// output formats as CLI v1 promises them.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, it } from 'node:test';
import { fromRoot } from '../helpers/paths.js';

const bin = fromRoot('bin', 'vfleet.js');
const invalid = fromRoot('test', 'fixtures', 'invalid', 'schema-typos.yaml');

function vfleet(args: string[], cwd = fromRoot()) {
  const result = spawnSync(process.execPath, [bin, ...args], { cwd, encoding: 'utf8' });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('vfleet validate', () => {
  it('accepts the root fleet.yaml (positional and -f) with exit 0', () => {
    for (const args of [
      ['validate', 'fleet.yaml'],
      ['validate', '-f', 'fleet.yaml'],
      ['validate'],
    ]) {
      const run = vfleet(args);
      assert.equal(run.code, 0, `${args.join(' ')}: ${run.stdout}${run.stderr}`);
      assert.match(run.stdout, /^fleet\.yaml: valid: 9 hosts/m);
      assert.equal(run.stderr, '');
    }
  });

  it('prints file:line:col: error: message and exits 1 for an invalid spec', () => {
    const run = vfleet(['validate', invalid]);
    assert.equal(run.code, 1);
    const lines = run.stdout.trim().split('\n');
    assert.ok(lines.length >= 5);
    for (const line of lines.slice(0, -1)) {
      assert.match(line, /^.+schema-typos\.yaml:\d+:\d+: (error|warning): .+ \[[a-z-]+\]$/);
    }
    assert.match(run.stdout, /did you mean "engine"\?/);
  });

  it('--format json carries formatVersion, counts and every diagnostic', () => {
    const run = vfleet(['validate', invalid, '--format', 'json']);
    assert.equal(run.code, 1);
    const report = JSON.parse(run.stdout);
    assert.equal(report.formatVersion, '1');
    assert.equal(report.valid, false);
    assert.equal(report.errorCount, report.diagnostics.length);
    assert.ok(report.errorCount >= 5);
    for (const d of report.diagnostics) {
      assert.deepEqual(Object.keys(d), [
        'severity',
        'code',
        'message',
        'file',
        'line',
        'column',
        'path',
      ]);
    }
    const valid = JSON.parse(vfleet(['validate', '--format', 'json']).stdout);
    assert.deepEqual(
      { valid: valid.valid, errorCount: valid.errorCount, diagnostics: valid.diagnostics },
      { valid: true, errorCount: 0, diagnostics: [] },
    );
  });

  it('--format github prints workflow annotations with escaped data', () => {
    const dir = mkdtempSync(`${tmpdir()}/vfleet-cli-`);
    writeFileSync(
      `${dir}/fleet.yaml`,
      'apiVersion: vfleet/v1\nkind: Fleet\nmetadata: { name: "50%\\nx" }\n',
    );
    const run = vfleet(['validate', '--format', 'github'], dir);
    assert.equal(run.code, 1);
    const lines = run.stdout.trim().split('\n');
    for (const line of lines)
      assert.match(
        line,
        /^::(error|warning) file=fleet\.yaml,line=\d+,col=\d+,title=vfleet [a-z-]+::/,
      );
    assert.match(run.stdout, /"50%25\\nx"/);
  });

  it('a missing file is a clear error, not a stack trace', () => {
    const dir = mkdtempSync(`${tmpdir()}/vfleet-cli-`);
    const run = vfleet(['validate'], dir);
    assert.equal(run.code, 1);
    assert.match(run.stdout, /^fleet\.yaml:1:1: error: cannot read the file: no such file/);
    assert.doesNotMatch(run.stdout + run.stderr, /\n\s+at /);
  });

  it('usage errors exit 1 without a stack trace; --help exits 0', () => {
    const bad = vfleet(['validate', '--format', 'xml']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /xml/);
    assert.doesNotMatch(bad.stderr, /\n\s+at /);
    const unknown = vfleet(['valdate']);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /validate/, 'suggests the command meant');
    const help = vfleet(['--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /validate/);
  });

  it('refuses hostile files cleanly: alias bomb, deep nesting, binary', () => {
    const dir = mkdtempSync(`${tmpdir()}/vfleet-cli-`);
    for (const name of ['alias-bomb.yaml', 'deep-flow-nesting.yaml', 'not-utf8.yaml']) {
      copyFileSync(fromRoot('test', 'fixtures', 'invalid', name), `${dir}/${name}`);
      const run = vfleet(['validate', name], dir);
      assert.equal(run.code, 1, name);
      assert.match(run.stdout, /\[(alias-limit|nesting-too-deep|encoding)\]/);
      assert.equal(run.stderr, '');
    }
  });
});

describe('the launcher', () => {
  it('exits once the command is over, whatever it left open', () => {
    // A handle nothing closes (what a leaked connection is to the event loop), opened before the
    // CLI runs: the process still ends, with the command's exit code, within the launcher's grace.
    const leak = `data:text/javascript,${encodeURIComponent('setInterval(() => {}, 1000);')}`;
    const started = Date.now();
    const result = spawnSync(process.execPath, ['--import', leak, bin, 'validate', 'fleet.yaml'], {
      cwd: fromRoot(),
      encoding: 'utf8',
      timeout: 60_000, // a bound for a loaded machine: without the grace it never ends
    });
    assert.equal(result.signal, null, `killed after ${Date.now() - started} ms: it did not exit`);
    assert.equal(result.status, 0);
    assert.match(result.stdout, /valid: 9 hosts/);
  });
});
