// The Redis password never leaves vfleet (issue 11, part 2). A canary password goes into
// REDIS_URL; then the apply lives through what made today's code print it hundreds of times:
// every connection killed, the password changed under it (authentication fails on every
// reconnect) and restored, the server SIGKILLed and restarted. A wrong password from the start,
// an ACL user and rediss:// are tried too. The canary is then looked for — raw and
// percent-encoded — in every command's stdout and stderr, every file vfleet wrote in the
// folder, and every Redis key and value (BullMQ's jobs and the event stream included).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { fromRoot } from '../helpers/paths.js';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';
import { everythingIn } from '../helpers/redis-dump.js';

const bin = fromRoot('bin', 'vfleet.js');
const CANARY = 'cAnAry+9f2e/Zq7-secret';
const OTHER = 'rotated-by-an-operator';
const ALICE = 'aLiCe+canary/5b1c';
const forms = (secret: string) => [secret, encodeURIComponent(secret)];
const SECRETS = [...forms(CANARY), ...forms(ALICE)];

interface Run {
  readonly what: string;
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function workdir(): string {
  const dir = mkdtempSync(`${tmpdir()}/vfleet-secrets-`);
  copyFileSync(fromRoot('fleet.yaml'), `${dir}/fleet.yaml`);
  cpSync(fromRoot('examples', 'inventories'), `${dir}/examples/inventories`, { recursive: true });
  return dir;
}

/** Every file under `dir`, with its bytes as latin1 text (a secret is ASCII). */
function filesUnder(dir: string): Array<{ path: string; text: string }> {
  const out: Array<{ path: string; text: string }> = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const stat = statSync(path, { throwIfNoEntry: false });
    if (stat?.isDirectory()) out.push(...filesUnder(path));
    else if (stat?.isFile()) out.push({ path, text: readFileSync(path).toString('latin1') });
  }
  return out;
}

const leaked = (text: string) => SECRETS.filter((s) => text.includes(s));

describe('the Redis password, through reconnects, auth failures and a restart', () => {
  let server: TestRedisServer;
  let admin: Redis;
  let port: string;
  const runs: Run[] = [];

  before(async () => {
    server = await startRedisServer({
      tcp: true,
      args: [
        '--requirepass',
        CANARY,
        '--user',
        'alice',
        'on',
        `>${ALICE}`,
        '~*',
        '&*',
        '+@all',
        '--maxmemory-policy',
        'noeviction',
        // A restart finds everything the killed server had acknowledged.
        '--appendonly',
        'yes',
        '--appendfsync',
        'always',
      ],
    });
    port = server.url.split(':').at(-1) as string;
    admin = server.client({ password: CANARY });
  });
  after(async () => server.stop());

  const url = (userInfo: string, scheme = 'redis') => `${scheme}://${userInfo}@127.0.0.1:${port}/0`;
  const vfleet = (what: string, args: string[], cwd: string, redisUrl: string): Run => {
    const r = spawnSync(process.execPath, [bin, ...args], {
      cwd,
      encoding: 'utf8',
      env: { ...process.env, VFLEET_EMBEDDED_BOOT_MS: '0', REDIS_URL: redisUrl },
      timeout: 120_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    const run = { what, code: r.status, stdout: r.stdout, stderr: r.stderr };
    runs.push(run);
    return run;
  };
  /** Failed authentications so far, from ACL LOG (Redis 7.0 has no INFO counter for them). */
  const deniedAuths = async () => {
    const entries = (await admin.call('ACL', 'LOG', '128')) as unknown[][];
    let count = 0;
    for (const entry of entries) {
      const field = (name: string) => entry[entry.indexOf(name) + 1];
      if (field('reason') === 'auth') count += Number(field('count'));
    }
    return count;
  };
  const until = async (what: string, ok: () => Promise<boolean>, ms = 20_000) => {
    const deadline = Date.now() + ms;
    while (!(await ok())) {
      assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
      await delay(20);
    }
  };

  it('a wrong password, an unknown user or TLS to a plain server: refused, never shown', () => {
    const dir = workdir();
    for (const [what, redisUrl] of [
      ['wrong password', url(`:${encodeURIComponent(`${CANARY}x`)}`)],
      ['alice with the default password', url(`alice:${encodeURIComponent(CANARY)}`)],
      ['rediss:// to a server without TLS', url(`:${encodeURIComponent(CANARY)}`, 'rediss')],
    ] as const) {
      for (const args of [['plan'], ['apply', '--auto-approve'], ['status']]) {
        const run = vfleet(`${what}: ${args[0]}`, args, dir, redisUrl);
        assert.equal(run.code, 1, `${run.what}: ${run.stderr}`);
        assert.match(
          run.stderr,
          /cannot connect to Redis at rediss?:\/\/(alice)?:\*\*\*@127\.0\.0\.1/,
        );
        assert.doesNotMatch(run.stderr, /\n\s+at /, 'no stack trace');
        assert.deepEqual(leaked(run.stdout + run.stderr), [], run.what);
      }
    }
    assert.equal(
      vfleet('alice status', ['status'], dir, url(`alice:${encodeURIComponent(ALICE)}`)).code,
      0,
    );
  });

  it('an apply whose connections are killed, whose password changes and whose server restarts finishes without printing it', async () => {
    const dir = workdir();
    const good = url(`:${encodeURIComponent(CANARY)}`);
    assert.equal(vfleet('plan --out', ['plan', '--out', 'plan.json'], dir, good).code, 0);
    const child = spawn(process.execPath, [bin, 'apply', '--auto-approve', '--workers', '1'], {
      cwd: dir,
      env: { ...process.env, VFLEET_EMBEDDED_BOOT_MS: '150', REDIS_URL: good },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    const recorded = () => admin.hlen('vfleet:{lab}:instances');
    await until('the apply to record 3 instances', async () => (await recorded()) >= 3);

    // Every connection dropped, and every reconnect refused until the password is back.
    const denied = await deniedAuths();
    await admin.config('SET', 'requirepass', OTHER);
    await admin.call('CLIENT', 'KILL', 'TYPE', 'normal');
    await admin.auth(OTHER);
    await until(
      'reconnects to fail authentication',
      async () => (await deniedAuths()) >= denied + 5,
    );
    await admin.config('SET', 'requirepass', CANARY);
    await admin.auth(CANARY);

    // Then the server dies and comes back (from its AOF): every client reconnects and
    // authenticates again.
    const before = await recorded();
    await until('the apply to go on', async () => (await recorded()) > before);
    await server.restart();
    admin = server.client({ password: CANARY });

    const code = await exited;
    runs.push({ what: 'apply through the outages', code, stdout, stderr });
    assert.equal(code, 0, stdout + stderr);
    assert.match(stdout, /Apply complete: 32 actions done\./);
    assert.doesNotMatch(stderr, /\n\s+at /, 'no stack trace');

    assert.equal(vfleet('stale plan', ['apply', 'plan.json'], dir, good).code, 1);
    assert.equal(vfleet('status', ['status', '--json'], dir, good).code, 0);
    const again = vfleet('second apply', ['apply', '--auto-approve'], dir, good);
    assert.equal(again.code, 0, again.stderr);

    for (const run of runs) {
      assert.deepEqual(leaked(run.stdout), [], `${run.what}: stdout`);
      assert.deepEqual(leaked(run.stderr), [], `${run.what}: stderr\n${run.stderr.slice(0, 2000)}`);
    }
    const files = filesUnder(dir);
    assert.ok(
      files.some((f) => f.path.endsWith('plan.json')),
      'the plan was written',
    );
    for (const f of files) assert.deepEqual(leaked(f.text), [], f.path);
    const stored = await everythingIn(admin);
    assert.ok(
      stored.some((s) => s.key.includes(':bull:')),
      "BullMQ's jobs are among them",
    );
    for (const s of stored) assert.deepEqual(leaked(s.text), [], s.key);
  });
});
