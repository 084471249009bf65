// REDIS_URL parsing and the URL vfleet may show (table-driven: habit 10, docs/architecture.md).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isVfleetError } from '../../src/model/errors.js';
import { debugEnables } from '../../src/state/connect-redis.js';
import { parseRedisUrl } from '../../src/state/redis-url.js';

describe('parseRedisUrl', () => {
  const cases = [
    {
      name: 'host only: port 6379, db 0',
      url: 'redis://localhost',
      want: {
        host: 'localhost',
        port: 6379,
        db: 0,
        tls: false,
        redacted: 'redis://localhost:6379/0',
      },
    },
    {
      name: 'password only (the default user)',
      url: 'redis://:s3cret@10.0.0.5:6380/2',
      want: {
        host: '10.0.0.5',
        port: 6380,
        username: undefined,
        password: 's3cret',
        db: 2,
        redacted: 'redis://:***@10.0.0.5:6380/2',
      },
    },
    {
      name: 'user and password, TLS',
      url: 'rediss://alice:pa55@redis.example.com:6390/1',
      want: {
        username: 'alice',
        password: 'pa55',
        tls: true,
        redacted: 'rediss://alice:***@redis.example.com:6390/1',
      },
    },
    {
      name: 'percent-encoded password',
      url: `redis://bob:${encodeURIComponent('p@ss:w/rd%')}@h:1/`,
      want: { username: 'bob', password: 'p@ss:w/rd%', db: 0, redacted: 'redis://bob:***@h:1/0' },
    },
    {
      name: 'user without password',
      url: 'redis://carol@h',
      want: { username: 'carol', password: undefined, redacted: 'redis://carol@h:6379/0' },
    },
    {
      name: 'IPv6 host',
      url: 'redis://[::1]:7000',
      want: { host: '::1', port: 7000, redacted: 'redis://[::1]:7000/0' },
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const got = parseRedisUrl(c.url);
      for (const [field, value] of Object.entries(c.want)) {
        assert.deepEqual(got[field as keyof typeof got], value, field);
      }
    });
  }

  const refused = [
    { name: 'not a URL', url: 'not a url :pw' },
    { name: 'unsupported scheme', url: 'http://user:pw@host' },
    { name: 'unix socket scheme', url: 'unix:///run/redis.sock' },
    { name: 'no host', url: 'redis://:pw@' },
    { name: 'db not a number', url: 'redis://:pw@host/zero' },
    { name: 'bad port', url: 'redis://:pw@host:99999' },
  ];
  for (const c of refused) {
    it(`refuses ${c.name} with redis-url, without quoting the URL`, () => {
      assert.throws(
        () => parseRedisUrl(c.url),
        (e: unknown) => {
          assert.ok(isVfleetError(e));
          assert.equal(e.code, 'redis-url');
          assert.doesNotMatch(e.message, /pw/);
          assert.match(e.message, /redis:\/\/\[user\[:password\]@\]host/);
          return true;
        },
      );
    });
  }
});

describe('debugEnables (the debug package rules, for the ioredis namespace)', () => {
  const cases: [string | undefined, boolean][] = [
    [undefined, false],
    ['', false],
    ['*', true],
    ['ioredis:*', true],
    ['express:*, ioredis:redis', true],
    ['*,-ioredis:*', false],
    ['ioredis:connection', false],
    ['bullmq*', false],
  ];
  for (const [debug, enabled] of cases) {
    it(`DEBUG=${JSON.stringify(debug)} → ${enabled}`, () => {
      assert.equal(debugEnables(debug, 'ioredis:redis'), enabled);
    });
  }
});
