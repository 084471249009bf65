// What vfleet reads on a user's word, as a user runs it: the real launcher in a child process,
// against real special files (mkfifo, /dev/zero), a sparse file past a limit, symbolic links and
// paths out of the spec's repository, and a name full of bidirectional and zero-width characters.
// A timeout on each run turns the old behaviour (a hang, or memory without bound) into a failure.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { fromRoot } from '../helpers/paths.js';

const bin = fromRoot('bin', 'vfleet.js');

function vfleet(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}) {
  const result = spawnSync(process.execPath, ['--max-old-space-size=512', bin, ...args], {
    cwd,
    encoding: 'utf8',
    timeout: 30_000,
    env: { ...process.env, VFLEET_ALLOW_PATHS: '', ...env },
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** A spec whose one host takes its inventory from `packagesFrom` (line 13, column 20). */
function spec(packagesFrom: string, name = 'lab'): string {
  return `apiVersion: vfleet/v1
kind: Fleet
metadata: { name: ${JSON.stringify(name)} }
spec:
  hosts:
    - name: hv-01
      cpu: { sockets: 1, coresPerSocket: 4, threadsPerCore: 1 }
      memoryMiB: 4096
      diskGiB: 100
      os: { family: debian, release: "12", arch: x86_64 }
      runs: [container]
      labels: { rack: r1 }
      packagesFrom: ${packagesFrom}
  images:
    - name: debian-12
      kind: container
      os: { family: debian, release: "12", arch: x86_64 }
  instances:
    - name: web
      image: debian-12
      replicas: 1
      resources: { vcpus: 1, memoryMiB: 64 }
`;
}

let root: string;
let repo: string;

before(() => {
  root = mkdtempSync(`${tmpdir()}/vfleet-input-`);
  repo = `${root}/repo`;
  mkdirSync(`${repo}/.git`, { recursive: true }); // a git work tree, as far as vfleet looks
  mkdirSync(`${repo}/fleets`);
  execFileSync('mkfifo', [`${repo}/fifo.yaml`]);
  execFileSync('mkfifo', [`${repo}/fleets/inventory.fifo`]);
  writeFileSync(`${root}/secret.tsv`, 'root:$y$j9T$SECRETSECRETSECRET:19000:0:99999:7:::\n');
  symlinkSync(`${root}/secret.tsv`, `${repo}/fleets/link.tsv`);
  writeFileSync(`${repo}/fleets/good.tsv`, 'bash\t5.2.15-2+b7\n');
});
after(() => rmSync(root, { recursive: true, force: true }));

const oneLineNoStack = (run: { stdout: string; stderr: string }) =>
  assert.doesNotMatch(run.stdout + run.stderr, /\n\s+at /);

describe('the spec file itself', () => {
  it('refuses a FIFO without waiting for a writer', () => {
    const run = vfleet(['validate', 'fifo.yaml'], repo);
    assert.equal(run.code, 1, run.stderr);
    assert.match(
      run.stdout,
      /^fifo\.yaml:1:1: error: cannot read the file: it is a FIFO \(named pipe\), not a regular file \[read-error\]$/m,
    );
    oneLineNoStack(run);
  });

  it('refuses /dev/zero instead of reading it into memory', () => {
    const run = vfleet(['validate', '/dev/zero'], repo);
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stdout, /is a character device, not a regular file \[read-error\]/);
    oneLineNoStack(run);
  });

  it('refuses a file past 64 MiB before reading it', () => {
    const big = `${repo}/big.yaml`;
    writeFileSync(big, '');
    truncateSync(big, 64 * 1024 * 1024 + 1);
    const run = vfleet(['validate', big], repo);
    assert.equal(run.code, 1, run.stderr);
    assert.match(
      run.stdout,
      /it is 67108865 bytes; the limit is 67108864 bytes \(64 MiB\) \[read-error\]$/m,
    );
  });
});

describe('packagesFrom', () => {
  const validate = (from: string, env: NodeJS.ProcessEnv = {}) => {
    writeFileSync(`${repo}/fleets/fleet.yaml`, spec(from));
    return vfleet(['validate', 'fleets/fleet.yaml'], repo, env);
  };

  it('reads an inventory inside the repository', () => {
    const run = validate('good.tsv');
    assert.equal(run.code, 0, run.stdout + run.stderr);
  });

  for (const [name, from] of [
    ['a relative path out of the repository', '../../secret.tsv'],
    ['an absolute path out of the repository', '/etc/passwd'],
    ['a symbolic link out of the repository', 'link.tsv'],
  ] as const) {
    it(`refuses ${name} at the field, without reading it`, () => {
      const run = validate(from);
      assert.equal(run.code, 1, run.stderr);
      const lines = run.stdout.trim().split('\n');
      assert.equal(lines.length, 2, run.stdout);
      assert.match(
        lines[0] as string,
        new RegExp(
          `^fleets/fleet\\.yaml:13:21: error: "${from.replace(/\./g, '\\.')}" is outside the spec's repository \\(${repo.replace(/[.+]/g, '\\$&')}\\); .*VFLEET_ALLOW_PATHS \\[outside-repository\\]$`,
        ),
      );
      assert.doesNotMatch(run.stdout, /SECRET|root:/);
    });
  }

  it('reads a folder VFLEET_ALLOW_PATHS names, and quotes a non-inventory only in short escaped excerpts', () => {
    const lines = Array.from({ length: 30 }, (_, i) => `user${i}\t\u202eSECRET-${'x'.repeat(80)}`);
    writeFileSync(`${root}/many.tsv`, `${lines.join('\n')}\n`);
    const run = validate(`${root}/many.tsv`, { VFLEET_ALLOW_PATHS: `/nowhere:${root}` });
    assert.equal(run.code, 1, run.stderr);
    const errors = run.stdout.trim().split('\n').slice(0, -1);
    assert.equal(errors.length, 11, run.stdout); // ten problems, then how many more
    assert.match(errors[10] as string, /and 20 more problems in this file/);
    for (const line of errors) {
      assert.doesNotMatch(line, /x{20}/, 'an excerpt is at most 20 characters');
      assert.doesNotMatch(line, /\u202e/, 'a bidirectional override is escaped');
    }
    assert.match(errors[0] as string, /"\\u202eSECRET-x{12}…" is not a Debian version/);
  });

  it('refuses a FIFO, /dev/zero and a file past 16 MiB, at the field', () => {
    const big = `${repo}/fleets/big.tsv`;
    writeFileSync(big, '');
    truncateSync(big, 16 * 1024 * 1024 + 1);
    for (const [from, reason] of [
      ['inventory.fifo', 'is a FIFO \\(named pipe\\), not a regular file'],
      ['/dev/zero', 'is a character device, not a regular file'],
      ['big.tsv', 'is 16777217 bytes; the limit is 16777216 bytes \\(16 MiB\\)'],
    ] as const) {
      const run = validate(from, { VFLEET_ALLOW_PATHS: '/dev' });
      assert.equal(run.code, 1, run.stderr);
      assert.match(
        run.stdout,
        new RegExp(
          `^fleets/fleet\\.yaml:13:21: error: cannot read the package inventory "${from}": it ${reason} \\[read-error\\]$`,
          'm',
        ),
      );
      oneLineNoStack(run);
    }
  });
});

describe('what reaches the terminal', () => {
  it('escapes bidirectional overrides, zero-width and control characters in quoted values', () => {
    const name = 'lab\u202egnp.exe\u200b\u2066x\u0007';
    // JSON.stringify writes the BEL as \u0007, which YAML reads back as the character.
    writeFileSync(`${repo}/bidi.yaml`, spec('good.tsv', name));
    const run = vfleet(['validate', 'bidi.yaml'], repo);
    assert.equal(run.code, 1, run.stderr);
    assert.match(
      run.stdout,
      /metadata\.name "lab\\u202egnp\.exe\\u200b\\u2066x\\u0007" is not valid/,
    );
    for (const c of ['\u202e', '\u200b', '\u2066', '\u0007']) assert.ok(!run.stdout.includes(c));
    // JSON stays JSON, and decodes to the value as written.
    const json = vfleet(['validate', 'bidi.yaml', '--format', 'json'], repo);
    assert.doesNotMatch(json.stdout, /[\u202e\u200b\u2066]/);
    const report = JSON.parse(json.stdout);
    const quoted = JSON.stringify(name); // how the message quotes it, BEL escaped already
    assert.ok(report.diagnostics.some((d: { message: string }) => d.message.includes(quoted)));
  });
});

describe('apply PLAN.json', () => {
  it('refuses a plan file that is a FIFO in one line', () => {
    execFileSync('mkfifo', [`${repo}/plan.json`]);
    const run = vfleet(['apply', 'plan.json', '--auto-approve'], repo);
    assert.equal(run.code, 1, run.stdout + run.stderr);
    assert.equal(
      run.stderr,
      'vfleet: cannot read the plan file plan.json: it is a FIFO (named pipe), not a regular file\n',
    );
  });
});
