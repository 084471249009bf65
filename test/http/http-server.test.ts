// The HTTP server of src/http/ in this process, on a real redis-server and the root fleet.yaml
// applied through the real queues: the loopback rule and basic auth, the bounds (a body where none
// is taken, a header too large, a method not served), errors as one line without a stack, the
// queue board read-only unless writable, BullMQ's exports merged into one exposition that a
// Prometheus text parser reads, and a clean close.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { Queue } from 'bullmq';
import parsePrometheus from 'parse-prometheus-text-format';
import { applyFleet } from '../../src/app/apply.js';
import { type FleetSession, openSession, readValidSpec } from '../../src/app/session.js';
import { renderAuditHtml } from '../../src/cli/views/audit/html.js';
import { authorized, credentialsFor } from '../../src/http/basic-auth.js';
import { isLoopback, parseListenAddress } from '../../src/http/listen-address.js';
import { type RunningHttpServer, startHttpServer } from '../../src/http/server.js';
import { redact } from '../../src/state/redact.js';
import { basicAuth as basic, httpCall as call, type HttpAnswer } from '../helpers/http-call.js';
import { fromRoot } from '../helpers/paths.js';
import { useApplyRedis } from '../helpers/vfleet-cli.js';

/** A body of one line that is no stack trace. */
function oneLine(answer: HttpAnswer): void {
  assert.equal(answer.body.trimEnd().split('\n').length, 1, answer.body);
  assert.doesNotMatch(answer.body, /\n\s+at |\.js:\d+/);
}

describe('the loopback rule and basic auth', () => {
  it('parses HOST:PORT and knows loopback from the rest', () => {
    assert.deepEqual(parseListenAddress('127.0.0.1:9464'), { host: '127.0.0.1', port: 9464 });
    assert.deepEqual(parseListenAddress('[::1]:0'), { host: '::1', port: 0 });
    assert.deepEqual(parseListenAddress('localhost:80'), { host: 'localhost', port: 80 });
    for (const bad of [
      '9464',
      '127.0.0.1',
      '127.0.0.1:x',
      ':9464',
      '::1:9464',
      '[10.0.0.1]:1',
      'a b:1',
      '1.2.3.4:70000',
    ])
      assert.throws(() => parseListenAddress(bad), /--http takes HOST:PORT/, bad);
    for (const loop of [
      '127.0.0.1',
      '127.0.0.2',
      '127.255.255.254',
      '::1',
      'localhost',
      '::ffff:127.0.0.1',
    ])
      assert.equal(isLoopback(loop), true, loop);
    for (const open of [
      '0.0.0.0',
      '::',
      '10.1.2.3',
      '192.168.1.10',
      '128.0.0.1',
      'vfleet.example.org',
      '::ffff:10.0.0.1',
    ])
      assert.equal(isLoopback(open), false, open);
  });

  it('refuses to serve beyond loopback without credentials, and never shows the password', () => {
    const open = parseListenAddress('0.0.0.0:9464');
    assert.throws(
      () => credentialsFor(open, {}),
      (e: Error) => {
        assert.match(e.message, /reachable beyond this machine: set VFLEET_HTTP_USER/);
        assert.equal(e.message.split('\n').length, 1);
        return true;
      },
    );
    assert.equal(credentialsFor(parseListenAddress('127.0.0.1:0'), {}), null);
    assert.throws(() => credentialsFor(open, { VFLEET_HTTP_USER: 'ops' }), /needs both/);
    const dir = mkdtempSync(`${tmpdir()}/vfleet-http-auth-`);
    try {
      const secret = 'pw-from-a-file-7c1e';
      writeFileSync(`${dir}/password`, `${secret}\n`);
      const creds = credentialsFor(open, {
        VFLEET_HTTP_USER: 'ops',
        VFLEET_HTTP_PASSWORD_FILE: `${dir}/password`,
      });
      assert.ok(creds);
      assert.equal(authorized(basic('ops', secret), creds), true);
      assert.equal(authorized(basic('ops', 'wrong'), creds), false);
      assert.equal(authorized(basic('other', secret), creds), false);
      assert.equal(authorized(undefined, creds), false);
      assert.equal(authorized('Bearer x', creds), false);
      // Read once, the password is redacted from anything printed from now on.
      assert.equal(redact(`oops ${secret}`), 'oops ***');
      assert.throws(
        () =>
          credentialsFor(open, {
            VFLEET_HTTP_USER: 'ops',
            VFLEET_HTTP_PASSWORD_FILE: `${dir}/absent`,
          }),
        /VFLEET_HTTP_PASSWORD_FILE .*absent does not exist/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the HTTP server on a real fleet', () => {
  const f = useApplyRedis();
  let session: FleetSession;
  let server: RunningHttpServer;
  let writable: RunningHttpServer;
  const user = 'ops';
  const password = 'http-test-secret-91f2';
  const logged: string[] = [];

  before(async () => {
    const dir = await f.fresh();
    const spec = readValidSpec(`${dir}/fleet.yaml`);
    assert.ok(spec.ok);
    session = await openSession(spec, {
      cwd: dir,
      env: { ...f.env, VFLEET_EMBEDDED_BOOT_MS: '0' },
    });
    const applied = await applyFleet(session, {
      approve: async () => true,
      concurrency: 4,
      externalWorkers: false,
      takeoverMs: 30_000,
    });
    assert.equal(applied.status, 'applied');
    const listen = parseListenAddress('127.0.0.1:0');
    const served = {
      session: () => session,
      sync: async () => undefined,
      notReady: () => undefined,
    };
    server = await startHttpServer({
      listen,
      credentials: credentialsFor(listen, {
        VFLEET_HTTP_USER: user,
        VFLEET_HTTP_PASSWORD: password,
      }),
      queuesWritable: false,
      process: served,
      renderReport: renderAuditHtml,
      log: (l) => logged.push(l),
    });
    writable = await startHttpServer({
      listen,
      credentials: null,
      queuesWritable: true,
      process: served,
      renderReport: renderAuditHtml,
    });
  });
  after(async () => {
    await server?.close();
    await writable?.close();
    await session?.close();
  });
  const auth = () => ({ authorization: basic(user, password) });

  it('asks for credentials everywhere but the probes', async () => {
    for (const path of ['/metrics', '/queues', '/reports/', '/']) {
      const refused = await call(`${server.url}${path}`);
      assert.equal(refused.status, 401, path);
      assert.match(String(refused.headers['www-authenticate']), /^Basic realm="vfleet"/);
      oneLine(refused);
      assert.equal(
        (await call(`${server.url}${path}`, { headers: { authorization: basic(user, 'nope') } }))
          .status,
        401,
      );
    }
    assert.equal((await call(`${server.url}/healthz`)).body, 'ok\n');
    assert.equal((await call(`${server.url}/readyz`)).body, 'ready\n');
    const head = await call(`${server.url}/metrics`, { method: 'HEAD', headers: auth() });
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
  });

  it('serves one exposition a Prometheus parser reads: each family once, every host queue in it', async () => {
    const answer = await call(`${server.url}/metrics`, { headers: auth() });
    assert.equal(answer.status, 200, answer.body);
    assert.match(String(answer.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    const families = parsePrometheus(answer.body);
    const names = families.map((m) => m.name);
    assert.deepEqual(
      names.filter((n, i) => names.indexOf(n) !== i),
      [],
      'no family twice',
    );
    // HELP and TYPE once per family, before its samples, and the samples of a family together.
    const familyOf = (line: string) => {
      const name = /^# (?:HELP|TYPE) (\S+)/.exec(line)?.[1] ?? /^[a-zA-Z_:][\w:]*/.exec(line)?.[0];
      if (!name || names.includes(name)) return name;
      return name.replace(/_(?:bucket|sum|count)$/, '');
    };
    const order: string[] = [];
    for (const line of answer.body.split('\n')) {
      const family = familyOf(line);
      if (family !== undefined && order.at(-1) !== family) order.push(family);
    }
    assert.deepEqual(order, names, 'each family in one block, in the parsed order');
    const jobs = families.find((m) => m.name === 'bullmq_job_count');
    assert.equal(jobs?.type, 'GAUGE');
    const queues = new Set(jobs?.metrics.map((m) => m.labels?.queue));
    assert.deepEqual([...queues].sort(), session.fleet.hosts.map((h) => `host.${h.name}`).sort());
    // A worker's process reports no sync status.
    assert.equal(families.find((m) => m.name === 'vfleet_fleet_info')?.metrics.length, 0);
    assert.ok(names.includes('process_cpu_user_seconds_total'), 'the process metrics');
  });

  it('refuses a body where none is taken, a method it does not serve, a header too large', async () => {
    const withBody = await call(`${server.url}/metrics`, {
      headers: { ...auth(), 'content-type': 'text/plain' },
      body: 'x'.repeat(100),
    });
    assert.equal(withBody.status, 413);
    assert.equal(withBody.headers.connection, 'close');
    oneLine(withBody);
    const post = await call(`${server.url}/metrics`, { method: 'POST', headers: auth() });
    assert.equal(post.status, 405);
    assert.equal(post.headers.allow, 'GET, HEAD');
    const missing = await call(`${server.url}/nowhere`, { headers: auth() });
    assert.equal(missing.status, 404);
    oneLine(missing);
    assert.equal((await call(`${server.url}/reports/nothing`, { headers: auth() })).status, 404);
    const huge = await call(`${server.url}/metrics`, {
      headers: { ...auth(), 'x-big': 'y'.repeat(20_000) },
    });
    assert.equal(huge.status, 431);
  });

  it('keeps the board read-only unless writable, and lists every host queue', async () => {
    const api = await call(`${server.url}/queues/api/queues`, { headers: auth() });
    assert.equal(api.status, 200);
    const listed = JSON.parse(api.body) as {
      queues: Array<{ name: string; readOnlyMode: boolean }>;
    };
    assert.deepEqual(
      listed.queues.map((q) => q.name).sort(),
      session.fleet.hosts.map((h) => `host.${h.name}`).sort(),
    );
    assert.ok(listed.queues.every((q) => q.readOnlyMode));
    const queue = 'host.hv-r1-01';
    const refused = await call(`${server.url}/queues/api/queues/${queue}/pause`, {
      method: 'PUT',
      headers: auth(),
    });
    assert.equal(refused.status, 405);
    assert.match(refused.body, /read-only/);
    const chunked = await call(`${writable.url}/queues/api/queues/${queue}/pause`, {
      method: 'PUT',
      headers: { 'transfer-encoding': 'chunked' },
      body: '{}',
    });
    assert.equal(chunked.status, 411);
    const paused = await call(`${writable.url}/queues/api/queues/${queue}/pause`, {
      method: 'PUT',
    });
    assert.ok(paused.status < 300, `${paused.status} ${paused.body}`);
    const q = new Queue(queue, { connection: session.connect(), prefix: session.queuePrefix });
    try {
      assert.equal(await q.isPaused(), true);
      await q.resume();
    } finally {
      await q.close();
    }
  });

  it('shows the reports, then errors as one line without a stack once Redis is gone', async () => {
    const index = await call(`${server.url}/reports/`, { headers: auth() });
    assert.equal(index.status, 200);
    for (const k of ['licenses', 'patches', 'failover', 'all'])
      assert.match(index.body, new RegExp(`href="${k}"`));
    const licenses = await call(`${server.url}/reports/licenses`, { headers: auth() });
    assert.equal(licenses.status, 200);
    assert.match(licenses.body, /windows-datacenter/);
    assert.match(String(licenses.headers['content-security-policy']), /default-src 'none'/);
    // Every answer so far: the password in none of them, nor in the log.
    assert.equal(logged.join('\n').includes(password), false);

    // A session closed under the server: the answers fail, each as one line.
    const other = readValidSpec(session.file);
    assert.ok(other.ok);
    const doomed = await openSession(other, { cwd: process.cwd(), env: { ...f.env } });
    const failing = await startHttpServer({
      listen: parseListenAddress('127.0.0.1:0'),
      credentials: null,
      queuesWritable: false,
      process: { session: () => doomed, sync: async () => undefined, notReady: () => undefined },
      renderReport: renderAuditHtml,
      log: (l) => logged.push(l),
    });
    try {
      await doomed.close();
      const broken = await call(`${failing.url}/metrics`);
      assert.ok(broken.status >= 500, `${broken.status} ${broken.body}`);
      oneLine(broken);
      const notReady = await call(`${failing.url}/readyz`);
      assert.equal(notReady.status, 503);
      assert.match(notReady.body, /^not ready: Redis .* does not answer\n$/);
      assert.equal((await call(`${failing.url}/healthz`)).status, 200);
    } finally {
      await failing.close();
    }
    assert.ok(
      logged.some((l) => /GET \/metrics: 5\d\d /.test(l)),
      logged.join('\n'),
    );
  });

  it('follows a new session (a controller on a new spec): its hosts’ queues, on the board and in the metrics', async () => {
    const other = readValidSpec(fromRoot('examples', 'minimal.yaml'));
    assert.ok(other.ok);
    const next = await openSession(other, { cwd: process.cwd(), env: { ...f.env } });
    let current = session;
    const following = await startHttpServer({
      listen: parseListenAddress('127.0.0.1:0'),
      credentials: null,
      queuesWritable: false,
      process: { session: () => current, sync: async () => undefined, notReady: () => undefined },
      renderReport: renderAuditHtml,
    });
    const boardQueues = async () =>
      (
        JSON.parse((await call(`${following.url}/queues/api/queues`)).body) as {
          queues: Array<{ name: string }>;
        }
      ).queues
        .map((q) => q.name)
        .sort();
    const metricQueues = async () => {
      const families = parsePrometheus((await call(`${following.url}/metrics`)).body);
      return [
        ...new Set(
          families.find((m) => m.name === 'bullmq_job_count')?.metrics.map((m) => m.labels?.queue),
        ),
      ].sort();
    };
    try {
      assert.equal((await boardQueues()).length, session.fleet.hosts.length);
      current = next;
      assert.deepEqual(await boardQueues(), ['host.host-01']);
      assert.deepEqual(await metricQueues(), ['host.host-01']);
    } finally {
      await following.close();
      await next.close();
    }
  });

  it('says in one line why it cannot listen', async () => {
    const taken = parseListenAddress(`127.0.0.1:${new URL(server.url).port}`);
    await assert.rejects(
      startHttpServer({
        listen: taken,
        credentials: null,
        queuesWritable: false,
        process: { session: () => session, sync: async () => undefined, notReady: () => undefined },
        renderReport: renderAuditHtml,
      }),
      (e: Error & { code?: string }) => {
        assert.equal(e.code, 'http-listen');
        assert.match(e.message, /^--http 127\.0\.0\.1:\d+: cannot listen: the address is in use/);
        return true;
      },
    );
  });

  it('closes: the port no longer answers', async () => {
    const extra = await startHttpServer({
      listen: parseListenAddress('127.0.0.1:0'),
      credentials: null,
      queuesWritable: false,
      process: { session: () => session, sync: async () => undefined, notReady: () => undefined },
      renderReport: renderAuditHtml,
    });
    assert.equal((await call(`${extra.url}/healthz`)).status, 200);
    await extra.close();
    await assert.rejects(call(`${extra.url}/healthz`), /ECONNREFUSED/);
  });
});
