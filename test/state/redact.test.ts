// redact(): the one function every printed message passes through. Named cases: a secret
// remembered when REDIS_URL was read, in each form text can carry it; URL user info; the
// arguments of AUTH / HELLO … AUTH / CONFIG SET requirepass as ioredis's errors show them.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { inspect } from 'node:util';
import { redact, redactedMessage } from '../../src/state/redact.js';
import { parseRedisUrl } from '../../src/state/redis-url.js';

const SECRET = "Cn4ry-'q\\u@x:y/z%";

describe('redact', () => {
  // Remembered the way vfleet learns a password: by reading REDIS_URL.
  parseRedisUrl(`redis://alice:${encodeURIComponent(SECRET)}@127.0.0.1:6390/1`);

  const cases: Array<{ name: string; text: string; want: string }> = [
    { name: 'raw', text: `pw=${SECRET}.`, want: 'pw=***.' },
    {
      name: 'percent-encoded',
      text: `x ${encodeURIComponent(SECRET)} y`,
      want: 'x *** y',
    },
    { name: 'JSON-escaped', text: JSON.stringify({ p: SECRET }), want: '{"p":"***"}' },
    {
      name: 'any URL with a password, secret or not',
      text: 'at rediss://bob:0ther-pw@h:1/0 and redis://:p@h and http://carol@h',
      want: 'at rediss://bob:***@h:1/0 and redis://:***@h and http://carol@h',
    },
    {
      name: 'HELLO … AUTH as ioredis attaches it to an error',
      text: "command: { name: 'hello', args: [ '3', 'AUTH', 'default', 'unknown-pw' ] }",
      want: "command: { name: 'hello', args: [ '3', 'AUTH', '***' ] }",
    },
    {
      name: 'AUTH with a password only: the command object, and a JSON array',
      text: '{ name: \'auth\', args: [ \'unknown-pw\' ] } ["AUTH","unknown-pw"]',
      want: "{ name: 'auth', args: [ '***' ] } [\"AUTH\", '***']",
    },
    {
      name: 'CONFIG SET requirepass',
      text: "args: [ 'SET', 'requirepass', 'new-pw' ]",
      want: "args: [ 'SET', 'requirepass', '***' ]",
    },
    {
      name: 'prose about authentication is left alone',
      text: 'WRONGPASS invalid username-password pair; AUTH failed',
      want: 'WRONGPASS invalid username-password pair; AUTH failed',
    },
  ];
  for (const c of cases) {
    it(c.name, () => assert.equal(redact(c.text), c.want));
  }

  it('an inspected ioredis error keeps no trace of the password', () => {
    const error = Object.assign(new Error('WRONGPASS invalid username-password pair'), {
      command: { name: 'hello', args: ['3', 'AUTH', 'alice', SECRET] },
    });
    const shown = redact(inspect(error, { depth: 5 }));
    assert.ok(!shown.includes(SECRET), shown);
    assert.match(shown, /WRONGPASS/);
    assert.equal(
      redactedMessage(error),
      'WRONGPASS invalid username-password pair',
      'one line, the message only',
    );
  });
});
