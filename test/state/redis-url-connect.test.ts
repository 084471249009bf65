// A Redis named by REDIS_URL: vfleet uses it, refuses one that evicts, and never shows its
// password — not in what connectRedis returns, not in what it throws, not on stderr.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { inspect } from 'node:util';
import { isVfleetError } from '../../src/model/errors.js';
import { connectRedis } from '../../src/state/connect-redis.js';
import { fromRoot } from '../helpers/paths.js';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';

// Characters that a URL must percent-encode, so the encoded form is checked as well.
const PASSWORD = 'Pw-7f3e@9:c/1%d';
const ALICE_PASSWORD = 'alice-Secret-51b2';
const servers: TestRedisServer[] = [];
const cwd = mkdtempSync(`${tmpdir()}/vfleet-redis-url-`);
let lru: TestRedisServer;
let lruWithoutConfig: TestRedisServer;
let noevictionWithoutConfig: TestRedisServer;
let secured: TestRedisServer;

function urlOf(server: TestRedisServer, userInfo = ''): string {
  return server.url.replace('redis://', `redis://${userInfo}`);
}

function withUrl(url: string): NodeJS.ProcessEnv {
  return { ...process.env, REDIS_URL: url };
}

/** True when `text` holds the password in any form it could be written in. */
function leaks(text: string, password: string): boolean {
  return text.includes(password) || text.includes(encodeURIComponent(password));
}

/** connectRedis in a child process, as the CLI runs it: what it prints on stdout and stderr. */
function connectInChild(url: string, debug: string | undefined) {
  const module = fromRoot('dist', 'src', 'state', 'connect-redis.js');
  const script = `
    const { connectRedis } = await import(${JSON.stringify(module)});
    try {
      const c = await connectRedis({ cwd: process.cwd(), env: process.env });
      console.log(JSON.stringify({ url: c.url, ping: await c.redis.ping() }));
      await c.close();
    } catch (e) {
      console.error(e.message);
      console.error(e);
      process.exitCode = 1;
    }`;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    cwd,
    env: { ...withUrl(url), DEBUG: debug },
    encoding: 'utf8',
    timeout: 20_000,
  });
  return { code: run.status, stdout: run.stdout, stderr: run.stderr };
}

before(async () => {
  [lru, lruWithoutConfig, noevictionWithoutConfig, secured] = await Promise.all([
    startRedisServer({ tcp: true, args: ['--maxmemory-policy', 'allkeys-lru'] }),
    startRedisServer({
      tcp: true,
      args: ['--maxmemory-policy', 'volatile-ttl', '--rename-command', 'CONFIG', ''],
    }),
    startRedisServer({ tcp: true, args: ['--rename-command', 'CONFIG', ''] }),
    startRedisServer({
      tcp: true,
      args: [
        '--requirepass',
        PASSWORD,
        '--user',
        'alice',
        'on',
        `>${ALICE_PASSWORD}`,
        '~*',
        '&*',
        '+@all',
      ],
    }),
  ]);
  servers.push(lru, lruWithoutConfig, noevictionWithoutConfig, secured);
});

after(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  rmSync(cwd, { recursive: true, force: true });
});

describe('REDIS_URL', () => {
  it('refuses a Redis that evicts, naming the policy and how to fix it', async () => {
    await assert.rejects(connectRedis({ cwd, env: withUrl(lru.url) }), (e: unknown) => {
      assert.ok(isVfleetError(e));
      assert.equal(e.code, 'redis-eviction-policy');
      assert.match(e.message, /maxmemory-policy allkeys-lru/);
      assert.match(e.message, /CONFIG SET maxmemory-policy noeviction/);
      assert.match(e.message, /redis\.conf/);
      return true;
    });
  });

  it('reads the policy from INFO where CONFIG is disabled (managed Redis)', async () => {
    await assert.rejects(
      connectRedis({ cwd, env: withUrl(lruWithoutConfig.url) }),
      (e: unknown) => isVfleetError(e) && /maxmemory-policy volatile-ttl/.test(e.message),
    );
    const connection = await connectRedis({ cwd, env: withUrl(noevictionWithoutConfig.url) });
    assert.equal(await connection.redis.ping(), 'PONG');
    await connection.close();
  });

  it('connects with a password (default user, and user:password) and shows it as ***', async () => {
    const port = secured.url.split(':').at(-1);
    for (const [userInfo, password, shown] of [
      [`:${encodeURIComponent(PASSWORD)}@`, PASSWORD, `redis://:***@127.0.0.1:${port}/0`],
      [`alice:${ALICE_PASSWORD}@`, ALICE_PASSWORD, `redis://alice:***@127.0.0.1:${port}/0`],
    ] as const) {
      const connection = await connectRedis({ cwd, env: withUrl(`${urlOf(secured, userInfo)}/3`) });
      assert.equal(connection.embedded, false);
      assert.equal(connection.url, shown.replace(/\/0$/, '/3'));
      assert.ok(!leaks(connection.url, password));
      await connection.redis.set('db-check', '1');
      assert.equal(await secured.client({ password: PASSWORD }).select(3), 'OK');
      await connection.close();
    }
  });

  it('never shows the password of a failed connection: wrong password, no password, no server', async () => {
    const closedPort = lru.url.replace(/:\d+$/, ':1');
    for (const url of [
      urlOf(secured, `:${encodeURIComponent(`${PASSWORD}-wrong`)}@`),
      urlOf(secured, `alice:${encodeURIComponent(PASSWORD)}@`),
      urlOf(secured),
      closedPort.replace('redis://', `redis://:${encodeURIComponent(PASSWORD)}@`),
    ]) {
      await assert.rejects(connectRedis({ cwd, env: withUrl(url) }), (e: unknown) => {
        assert.ok(isVfleetError(e), String(e));
        assert.equal(e.code, 'redis-connect');
        assert.match(e.message, /cannot connect to Redis at redis:\/\//);
        assert.ok(!leaks(e.message, PASSWORD), e.message);
        assert.ok(
          !leaks(inspect(e, { depth: 10, showHidden: true }), PASSWORD),
          'nor in its cause',
        );
        return true;
      });
    }
  });

  it('keeps the password off stdout and stderr', () => {
    const good = urlOf(secured, `:${encodeURIComponent(PASSWORD)}@`);
    const ok = connectInChild(good, '*,-ioredis:*');
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /"url":"redis:\/\/:\*\*\*@127\.0\.0\.1:\d+\/0","ping":"PONG"/);
    const wrong = connectInChild(
      urlOf(secured, `alice:${encodeURIComponent(PASSWORD)}@`),
      undefined,
    );
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /WRONGPASS/);
    // ioredis's own debug output prints AUTH's arguments: vfleet refuses to run with it on.
    const debugging = connectInChild(good, 'express:*,ioredis:*');
    assert.equal(debugging.code, 1);
    assert.match(debugging.stderr, /DEBUG turns on ioredis's debug output/);
    for (const run of [ok, wrong, debugging]) {
      assert.ok(!leaks(run.stdout + run.stderr, PASSWORD), run.stdout + run.stderr);
    }
  });

  it('refuses an unparsable URL and an unsupported scheme with redis-url', async () => {
    for (const url of ['::not a url::', `http://:${PASSWORD}@localhost`]) {
      await assert.rejects(connectRedis({ cwd, env: withUrl(url) }), (e: unknown) => {
        assert.ok(isVfleetError(e));
        assert.equal(e.code, 'redis-url');
        assert.ok(!leaks(e.message, PASSWORD));
        return true;
      });
    }
  });
});
