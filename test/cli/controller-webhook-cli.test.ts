// `POST /hooks/git`: a forge's push webhook answered by the real `vfleet controller --git REPO
// --http 127.0.0.1:0`, on a real redis-server and a real git repository in a temporary folder.
// The controller fetches every 10 minutes only, so a commit Synced within seconds can only be
// the webhook's doing. What the forges send is built here as they build it (GitHub's
// X-Hub-Signature-256 over the raw body, GitLab's X-Gitlab-Token), and checked:
//
//   1. a GitHub-signed push to the followed ref: 202, the commit Synced, a `push-received` event;
//   2. a bad or missing signature: 401 in one line, nothing requested, nothing fetched;
//   3. GitLab's token: a wrong one 401, the right one Synced;
//   4. a push to another ref, a ping, another event: answered, nothing requested; a wrong method
//      405, a body that is not JSON 400, a body too long 413 (declared, and chunked as it comes);
//   5. many pushes at once: fewer requests seen by the leader than pushes (one fetch each);
//   6. a second controller, standing by, with the secret in VFLEET_WEBHOOK_SECRET and basic auth
//      on its server: the hook needs no basic auth (the signature is its credential), and the
//      leader fetches the push the standby received;
//   7. the secret in no output, no event, no Redis value.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { fleetKeys } from '../../src/state/keys.js';
import {
  batchReplicas,
  type FleetRepo,
  fleetRepo,
  type SyncStatusJson,
  syncedAt,
} from '../helpers/git-repo.js';
import { basicAuth, type HttpAnswer, httpCall } from '../helpers/http-call.js';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';
import { everythingIn } from '../helpers/redis-dump.js';
import {
  fleetEvents,
  pollUntil,
  type RunningVfleet,
  spawnVfleet,
  vfleet,
  workdir,
} from '../helpers/vfleet-cli.js';

const keys = fleetKeys('lab');
const SECRET = `hook-secret-${process.pid}-Qz8w`;
const DEADLINE_MS = 60_000;

interface Event {
  type?: string;
  forge?: string;
  ref?: string;
  commit?: string;
  delivery?: string;
  requests?: number;
}

/** A body of one line that is no stack trace. */
function oneLine(answer: HttpAnswer): void {
  assert.equal(answer.body.trimEnd().split('\n').length, 1, answer.body);
  assert.doesNotMatch(answer.body, /\n\s+at |\.js:\d+/);
}

const sign = (secret: string, body: string) =>
  `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;

/** A push as GitHub sends it (the fields vfleet reads, and a few it does not). */
const githubPush = (ref: string, commit: string) =>
  JSON.stringify({
    ref,
    before: '0'.repeat(40),
    after: commit,
    repository: { full_name: 'ops/fleet', clone_url: 'https://example.test/ops/fleet.git' },
    pusher: { name: 'ada' },
    head_commit: { id: commit, message: 'a change' },
  });

/** A raw request on a socket of its own: the answer (head and body), once it has all come. */
function rawRequest(port: number, head: string, chunks: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let answer = '';
    const whole = () => {
      const end = answer.indexOf('\r\n\r\n');
      const length = /\r\ncontent-length: (\d+)/i.exec(answer)?.[1];
      return end >= 0 && length !== undefined && answer.length >= end + 4 + Number(length);
    };
    socket.setEncoding('utf8');
    socket.on('data', (d) => {
      answer += d;
      if (!whole()) return;
      socket.destroy();
      resolve(answer);
    });
    socket.on('error', (e) => reject(new Error(`${e.message} after ${JSON.stringify(answer)}`)));
    socket.on('close', () => resolve(answer));
    socket.setTimeout(20_000, () => reject(new Error(`no whole answer: ${answer}`)));
    socket.on('connect', () => {
      socket.write(head);
      for (const c of chunks) if (!socket.destroyed) socket.write(c);
    });
  });
}

describe('vfleet controller --git: a push webhook at /hooks/git', () => {
  let server: TestRedisServer;
  let redis: Redis;
  let env: NodeJS.ProcessEnv;
  let repo: string;
  let home: string;
  let url: string;
  let leader: RunningVfleet;
  const children: Parameters<typeof spawnVfleet>[3] = [];

  let fleet: FleetRepo;
  const git = (...args: string[]) => fleet.git(...args);
  /** Sets the batch group's replicas and commits; returns the commit. */
  const commit = (replicas: number) => fleet.commit(`batch: ${replicas}`, batchReplicas(replicas));
  const events = () => fleetEvents<Event>(home, env);

  const synced = (commitId: string) =>
    syncedAt<SyncStatusJson & { instances: Array<{ group: string }> }>(
      commitId,
      home,
      env,
      DEADLINE_MS,
    );

  /** How many reconciles were asked for (the counter `vfleet reconcile --now` bumps). */
  const requested = async () => Number((await redis.get(keys.reconcileRequest)) ?? 0);
  /** The commit the leader last judged: what it fetched. */
  const judged = async () =>
    (
      JSON.parse((await redis.get(keys.sync)) ?? '{}') as {
        target?: { commit?: string };
      }
    ).target?.commit;

  const github = (body: string, headers: Record<string, string> = {}, to = url) =>
    httpCall(`${to}/hooks/git`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-github-event': 'push',
        'x-github-delivery': 'f6266f16-1bf3-46a5-9ea4-602e06ead473',
        'x-hub-signature-256': sign(SECRET, body),
        ...headers,
      },
      body,
    });

  const servedUrl = (c: RunningVfleet) =>
    pollUntil('the server listening', () => {
      const m = /"type":"http-listening","url":"(http:\/\/[^"]+)"/.exec(c.output());
      assert.equal(c.child.exitCode, null, c.output());
      return m?.[1];
    });

  before(async () => {
    server = await startRedisServer({ args: ['--maxmemory-policy', 'noeviction'], tcp: true });
    redis = server.client();
    env = { REDIS_URL: `${server.url}/0` };
    fleet = fleetRepo();
    repo = fleet.dir;
    home = workdir();
    mkdirSync(`${home}/.vfleet`, { recursive: true });
    writeFileSync(`${home}/webhook-secret`, `${SECRET}\n`, { mode: 0o600 });
    leader = spawnVfleet(
      [
        'controller',
        '--git',
        repo,
        '--interval',
        '10m',
        '--lease-ttl',
        '3s',
        '--auto-apply',
        '--json',
        '--http',
        '127.0.0.1:0',
        '--webhook-secret-file',
        `${home}/webhook-secret`,
      ],
      home,
      env,
      children,
    );
    url = await servedUrl(leader);
    await synced(git('rev-parse', 'HEAD'));
  });

  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await server?.stop();
    for (const dir of [repo, home]) if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('fetches and syncs a commit at once on a GitHub-signed push, and records the push', async () => {
    const next = commit(9);
    const answer = await github(githubPush('refs/heads/main', next));
    assert.equal(answer.status, 202, answer.body);
    assert.equal(answer.body, `fetch requested: refs/heads/main ${next.slice(0, 12)}\n`);
    const s = await synced(next);
    assert.equal(s.instances.filter((i) => i.group === 'batch').length, 9);
    const pushed = events().find((e) => e.type === 'push-received');
    assert.equal(pushed?.forge, 'github');
    assert.equal(pushed?.ref, 'refs/heads/main');
    assert.equal(pushed?.commit, next);
    assert.equal(pushed?.delivery, 'f6266f16-1bf3-46a5-9ea4-602e06ead473');
    assert.match(leader.output(), /"type":"push-received"/, 'shown by the controller too');
  });

  let pending: string;

  it('refuses a bad or missing signature (401, one line) and fetches nothing', async () => {
    const was = await requested();
    const seen = events().filter((e) => e.type === 'push-received').length;
    pending = commit(10);
    const body = githubPush('refs/heads/main', pending);
    for (const headers of [
      { 'x-hub-signature-256': sign('not-the-secret', body) },
      { 'x-hub-signature-256': sign(SECRET, `${body} `) }, // signed another body
      { 'x-hub-signature-256': 'sha256=' },
      { 'x-hub-signature-256': '' },
    ]) {
      const refused = await github(body, headers);
      assert.equal(refused.status, 401, JSON.stringify(headers));
      oneLine(refused);
    }
    const unsigned = await httpCall(`${url}/hooks/git`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-github-event': 'push' },
      body,
    });
    assert.equal(unsigned.status, 401);
    assert.match(unsigned.body, /no X-Hub-Signature-256/);
    // The answer comes after the request is recorded: nothing was, so the leader fetches nothing.
    assert.equal(await requested(), was);
    assert.equal(events().filter((e) => e.type === 'push-received').length, seen);
    assert.notEqual(await judged(), pending);
  });

  it('takes GitLab’s token: a wrong one 401, the right one syncs the commit', async () => {
    const body = JSON.stringify({
      object_kind: 'push',
      ref: 'refs/heads/main',
      after: pending,
      checkout_sha: pending,
      project: { path_with_namespace: 'ops/fleet' },
    });
    const gitlab = (token: string) =>
      httpCall(`${url}/hooks/git`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-gitlab-event': 'Push Hook',
          'x-gitlab-token': token,
        },
        body,
      });
    const was = await requested();
    const wrong = await gitlab(`${SECRET}x`);
    assert.equal(wrong.status, 401);
    oneLine(wrong);
    assert.equal(await requested(), was);
    const answer = await gitlab(SECRET);
    assert.equal(answer.status, 202, answer.body);
    await synced(pending);
    assert.ok(events().some((e) => e.type === 'push-received' && e.forge === 'gitlab'));
  });

  it('ignores another ref, a ping and other events; refuses a wrong method, bad JSON, a body too long', async () => {
    const was = await requested();
    const head = git('rev-parse', 'HEAD');
    const other = await github(githubPush('refs/heads/other', head));
    assert.equal(other.status, 200);
    assert.equal(other.body, 'ignored: ref refs/heads/other is not the followed main\n');
    const ping = await github(JSON.stringify({ zen: 'Keep it logically awesome.' }), {
      'x-github-event': 'ping',
    });
    assert.deepEqual([ping.status, ping.body], [200, 'pong\n']);
    const issue = await github(JSON.stringify({ action: 'opened' }), {
      'x-github-event': 'issues',
    });
    assert.deepEqual([issue.status, issue.body], [200, 'ignored: event issues\n']);
    assert.equal(await requested(), was, 'none of them asked for anything');

    const get = await httpCall(`${url}/hooks/git`);
    assert.equal(get.status, 405);
    assert.equal(get.headers.allow, 'POST');
    const badJson = await github('{"ref": ');
    assert.equal(badJson.status, 400);
    assert.equal(badJson.body, 'the body is not JSON\n');
    const noForge = await httpCall(`${url}/hooks/git`, { method: 'POST', body: '{}' });
    assert.equal(noForge.status, 400);
    oneLine(noForge);

    const port = Number(new URL(url).port);
    const declared = await rawRequest(
      port,
      `POST /hooks/git HTTP/1.1\r\nhost: x\r\nx-github-event: push\r\nx-hub-signature-256: sha256=00\r\ncontent-type: application/json\r\ncontent-length: ${2 * 1024 * 1024}\r\n\r\n`,
      ['{"ref":'],
    );
    assert.match(declared, /^HTTP\/1\.1 413 /);
    // Chunked, no length: refused as it comes, past 1 MiB (the rest is never read).
    const chunk = 'x'.repeat(64 * 1024);
    const chunked = await rawRequest(
      port,
      'POST /hooks/git HTTP/1.1\r\nhost: x\r\nx-github-event: push\r\nx-hub-signature-256: sha256=00\r\ntransfer-encoding: chunked\r\n\r\n',
      Array.from({ length: 24 }, () => `${chunk.length.toString(16)}\r\n${chunk}\r\n`),
    );
    assert.match(chunked, /^HTTP\/1\.1 413 /);
    assert.match(chunked, /a push is at most 1048576 bytes here/);
    assert.equal(await requested(), was);
  });

  it('makes many pushes at once one request of the leader, and syncs their commit', async () => {
    const next = commit(11);
    const body = githubPush('refs/heads/main', next);
    const before = events().length;
    const answers = await Promise.all(Array.from({ length: 8 }, () => github(body)));
    assert.deepEqual(
      answers.map((a) => a.status),
      Array(8).fill(202),
    );
    await synced(next);
    const asked = events()
      .slice(before)
      .filter((e) => e.type === 'reconcile-requested');
    assert.equal(
      asked.reduce((n, e) => n + (e.requests ?? 0), 0),
      8,
      'every push counted',
    );
    assert.ok(asked.length < 8, `the leader saw ${asked.length} requests for 8 pushes`);
  });

  it('on a standby controller (secret from the environment, basic auth on): no basic auth for the hook, and the leader fetches', async () => {
    const standby = spawnVfleet(
      ['controller', '--git', repo, '--interval', '10m', '--json', '--http', '127.0.0.1:0'],
      workdir(),
      {
        ...env,
        VFLEET_WEBHOOK_SECRET: SECRET,
        VFLEET_HTTP_USER: 'ops',
        VFLEET_HTTP_PASSWORD: 'basic-auth-pw-7e1',
      },
      children,
    );
    const standbyUrl = await servedUrl(standby);
    assert.match(standby.output(), /"webhook":"http:\/\/127\.0\.0\.1:\d+\/hooks\/git"/);
    await pollUntil(
      'the standby ready',
      async () => ((await httpCall(`${standbyUrl}/readyz`)).status === 200 ? true : undefined),
      DEADLINE_MS,
    );
    assert.equal((await httpCall(`${standbyUrl}/metrics`)).status, 401, 'basic auth elsewhere');
    assert.equal(
      (
        await httpCall(`${standbyUrl}/metrics`, {
          headers: { authorization: basicAuth('ops', 'basic-auth-pw-7e1') },
        })
      ).status,
      200,
    );
    const next = commit(12);
    const answer = await github(githubPush('refs/heads/main', next), {}, standbyUrl);
    assert.equal(answer.status, 202, answer.body);
    await synced(next);
    assert.doesNotMatch(standby.output(), /"type":"leader"/, 'it never led');
    standby.child.kill('SIGTERM');
    assert.equal(await standby.exited, 0);
    assert.ok(!standby.output().includes(SECRET));
  });

  it('keeps the secret out of every output, event and Redis value', async () => {
    leader.child.kill('SIGTERM');
    assert.equal(await leader.exited, 0);
    assert.ok(!leader.output().includes(SECRET), 'not in the controller’s output');
    const all = vfleet(['events', '--json', '--last', '1000'], home, env).stdout;
    assert.ok(all.includes('push-received'));
    assert.ok(!all.includes(SECRET), 'not in the events');
    // Every key, its DUMP and a typed read of its value (a key gone meanwhile reads as nothing).
    const everything = await everythingIn(redis);
    for (const { key, text } of everything) {
      assert.ok(!key.includes(SECRET), 'not in a key name');
      assert.ok(!text.includes(SECRET), `${key} holds no secret`);
    }
    const scanned = everything.length;
    assert.ok(scanned > 10, `${scanned} keys scanned`);
  });
});
