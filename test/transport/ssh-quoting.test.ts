// Arguments through a real sshd and the remote login shell, byte for byte: random strings full of
// what shells interpret, and payloads that would create a canary file if any shell on the way
// (the login shell, the wrapper's /bin/sh) interpolated them. The canary must never appear.
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { isVfleetError } from '../../src/model/errors.js';
import { SshTransport } from '../../src/transport/ssh-transport.js';
import { startSshd, type TestSshd } from '../helpers/sshd.js';

describe('ssh transport: arguments arrive as they were sent', () => {
  let sshd: TestSshd;
  let transport: SshTransport;
  let scratch: string;
  let canary: string;
  before(async () => {
    sshd = await startSshd({ address: '127.0.0.56' });
    transport = new SshTransport(sshd.host('quoting'));
    scratch = mkdtempSync(`${tmpdir()}/vfleet-test-quoting-`);
    canary = `${scratch}/canary`;
  });
  after(async () => {
    await transport?.close();
    await sshd?.stop();
    rmSync(scratch, { recursive: true, force: true });
  });

  /** Each would run `touch <canary>` if a shell evaluated it instead of passing it on. */
  const payloads = () => [
    `$(touch ${canary})`,
    `\`touch ${canary}\``,
    `; touch ${canary}`,
    `'; touch ${canary}; '`,
    `"; touch ${canary}; "`,
    `| touch ${canary}`,
    `&& touch ${canary}`,
    `\ntouch ${canary}\n`,
    `'\ntouch ${canary}\n'`,
    `\\'; touch ${canary} #`,
    `$(IFS=_;c=touch_${canary};$c)`,
    `\${IFS}; touch ${canary}`,
  ];

  const echoed = async (args: readonly string[]) => {
    const result = await transport.exec(['printf', '%s\\0', ...args]);
    assert.equal(result.code, 0, result.stderr.toString());
    assert.ok(
      result.stdout.equals(Buffer.from(args.map((s) => `${s}\0`).join(''))),
      `sent ${JSON.stringify(args)}, got ${JSON.stringify(result.stdout.toString())}`,
    );
  };

  it('uses live payloads: a shell that evaluates them does create the canary', async () => {
    for (const payload of [payloads()[0], payloads()[2], payloads()[7]]) {
      await transport.exec(['sh', '-c', `: ${payload}`]);
      assert.equal(existsSync(canary), true, payload);
      rmSync(canary);
    }
  });

  it('carries random arguments byte for byte (property, 200 runs)', async () => {
    const shellish = fc.constantFrom(
      "'",
      '"',
      '\\',
      '$',
      '`',
      ';',
      '|',
      '&&',
      '&',
      '\n',
      '\r',
      '\t',
      ' ',
      '-',
      '--',
      '*',
      '?',
      '[a-z]',
      '~',
      '~root',
      '#',
      '!',
      '$(',
      '${',
      ')',
      '<',
      '>',
      '=',
      'é',
      '€',
      '😀',
      '\u00a0',
      '\u202e',
    );
    const piece = fc.oneof(
      shellish,
      fc.constantFrom(...payloads()),
      fc.string({ unit: 'binary', maxLength: 4 }).map((s) => s.replace(/\0/g, '')),
      fc.string({ unit: 'grapheme', maxLength: 4 }),
    );
    const argument = fc.array(piece, { maxLength: 6 }).map((parts) => parts.join(''));
    await fc.assert(
      fc.asyncProperty(fc.array(argument, { minLength: 1, maxLength: 5 }), async (args) => {
        await echoed(args);
        assert.equal(existsSync(canary), false, `a shell ran a payload of ${JSON.stringify(args)}`);
      }),
      { numRuns: 200 },
    );
  });

  it('never runs a payload, given as an argument or as the program', async () => {
    await echoed(payloads());
    for (const payload of payloads()) {
      await assert.rejects(
        transport.exec([payload, 'x']),
        (e) => isVfleetError(e) && e.code === 'command-failed',
      );
    }
    assert.equal(existsSync(canary), false);
  });

  it('runs a program whose path is full of shell syntax', async () => {
    const program = `${scratch}/we'ird $(x) \`y\` ;|& *prog`;
    writeFileSync(program, `#!/bin/sh\nprintf '%s\\0' "$0" "$@"\n`);
    chmodSync(program, 0o755);
    const result = await transport.exec([program, "a'b", '']);
    assert.equal(result.stdout.toString(), `${program}\0a'b\0\0`);
  });

  it('refuses an argument it cannot carry (NUL) before anything is sent', async () => {
    await assert.rejects(
      transport.exec(['touch', `${canary}\0`]),
      (e) => isVfleetError(e) && e.code === 'invalid-argument',
    );
    assert.equal(existsSync(canary), false);
  });
});
