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
  const sentinelAndCluster = [
    {
      name: "Sentinel, lettuce's form: sentinels, db, #master",
      url: 'redis-sentinel://:s3cret@10.0.0.5:26380,10.0.0.6/2#mymaster',
      want: {
        kind: 'sentinel',
        sentinels: [
          { host: '10.0.0.5', port: 26380 },
          { host: '10.0.0.6', port: 26379 },
        ],
        name: 'mymaster',
        db: 2,
        username: undefined,
        password: 's3cret',
        tls: false,
        redacted: 'redis-sentinel://:***@10.0.0.5:26380,10.0.0.6:26379/2#mymaster',
      },
    },
    {
      name: 'Sentinel: the master as ?sentinelMasterId=, a user, an IPv6 sentinel, TLS',
      url: 'rediss-sentinel://alice:pw@[::1]:5000,s2:5001?sentinelMasterId=main',
      want: {
        kind: 'sentinel',
        sentinels: [
          { host: '::1', port: 5000 },
          { host: 's2', port: 5001 },
        ],
        name: 'main',
        db: 0,
        username: 'alice',
        tls: true,
        redacted: 'rediss-sentinel://alice:***@[::1]:5000,s2:5001/0#main',
      },
    },
    {
      name: 'Cluster: seed nodes, port 6379 by default',
      url: 'redis-cluster://bob:p%40ss@n1:7000,n2,n3:7002',
      want: {
        kind: 'cluster',
        nodes: [
          { host: 'n1', port: 7000 },
          { host: 'n2', port: 6379 },
          { host: 'n3', port: 7002 },
        ],
        db: 0,
        username: 'bob',
        password: 'p@ss',
        redacted: 'redis-cluster://bob:***@n1:7000,n2:6379,n3:7002',
      },
    },
    {
      name: 'Cluster: one seed, no credentials, a trailing slash',
      url: 'redis-cluster://n1:7000/',
      want: {
        kind: 'cluster',
        nodes: [{ host: 'n1', port: 7000 }],
        redacted: 'redis-cluster://n1:7000',
      },
    },
  ];
  for (const c of [...cases, ...sentinelAndCluster]) {
    it(c.name, () => {
      const got = parseRedisUrl(c.url) as unknown as Record<string, unknown>;
      for (const [field, value] of Object.entries(c.want)) {
        assert.deepEqual(got[field], value, field);
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
    { name: 'several hosts for one server', url: 'redis://:pw@a:1,b:2' },
    { name: 'a Sentinel URL without a master', url: 'redis-sentinel://:pw@a:26379,b:26379/0' },
    { name: 'a master name of other characters', url: 'redis-sentinel://:pw@a#m%20x' },
    { name: 'a Cluster URL with a database', url: 'redis-cluster://:pw@a:7000,b:7001/3' },
    { name: 'a Cluster URL with a #', url: 'redis-cluster://:pw@a:7000#m' },
    { name: 'a parameter vfleet does not read', url: 'redis-cluster://:pw@a:7000?timeout=5s' },
    { name: 'an empty host in the list', url: 'redis-cluster://:pw@a:7000,,b:7001' },
    { name: 'a bad port in the list', url: 'redis-sentinel://:pw@a:26379,b:0#m' },
    { name: 'a badly encoded password', url: 'redis-cluster://:pw%zz@a:7000' },
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
