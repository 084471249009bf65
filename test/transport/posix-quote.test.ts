// The quoting every ssh command goes through: named cases, then a property checked against the
// shells a login shell is likely to be (dash as /bin/sh, bash), run here without ssh.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { isVfleetError } from '../../src/model/errors.js';
import { posixCommandLine, posixQuote } from '../../src/transport/posix-quote.js';

describe('posixQuote', () => {
  const cases: ReadonlyArray<[string, string, string]> = [
    ['a plain word', 'abc', `'abc'`],
    ['the empty string, which must stay an argument', '', `''`],
    ['a single quote', "it's", `'it'\\''s'`],
    ['only a quote', "'", `''\\'''`],
    ['what double quotes would expand', '$(id) `id` $HOME \\', `'$(id) \`id\` $HOME \\'`],
    ['a newline and a carriage return', 'a\nb\r', `'a\nb\r'`],
    ['a leading dash', '-rf', `'-rf'`],
  ];
  for (const [name, input, quoted] of cases) {
    it(name, () => assert.equal(posixQuote(input), quoted));
  }

  it('refuses NUL, which no shell or exec(2) can carry', () => {
    assert.throws(
      () => posixQuote('a\0b'),
      (e) => isVfleetError(e) && e.code === 'invalid-argument',
    );
  });

  it('refuses a lone surrogate, which UTF-8 would turn into U+FFFD', () => {
    assert.throws(
      () => posixQuote('a\uD800b'),
      (e) => isVfleetError(e) && e.code === 'invalid-argument',
    );
    assert.throws(
      () => posixQuote('\uDC00'),
      (e) => isVfleetError(e) && e.code === 'invalid-argument',
    );
    assert.equal(posixQuote('😀'), `'😀'`);
  });

  it('quotes every element of a command line, the program too', () => {
    assert.equal(posixCommandLine(['my prog', 'a b', "c'd"]), `'my prog' 'a b' 'c'\\''d'`);
  });

  for (const shell of ['/bin/sh', '/bin/bash']) {
    it(`reads back byte for byte in ${shell} (property)`, () => {
      const argument = fc
        .string({ unit: 'binary', maxLength: 12 })
        .map((s) => s.replace(/\0/g, ''));
      fc.assert(
        fc.property(fc.array(argument, { minLength: 1, maxLength: 6 }), (args) => {
          const line = posixCommandLine(['printf', '%s\\0', ...args]);
          const result = spawnSync(shell, ['-c', line]);
          assert.equal(result.status, 0);
          assert.equal(result.stdout.toString('utf8'), args.map((s) => `${s}\0`).join(''));
        }),
        { numRuns: 150 },
      );
    });
  }
});
