// REDIS_URL=redis-sentinel:// and rediss-sentinel:// end to end (issue 17), against a real
// master, replica and three Sentinels the test starts (helpers/redis-sentinel.ts), with a canary
// password: the main job — `vfleet apply --auto-approve` of the root fleet.yaml on the embedded
// engine — then `vfleet plan` (converged) and `vfleet status`, into the master's database 3; the
// raw state read through the Sentinels; the eviction check on a replica; the one-line errors;
// TLS to the Sentinels and the data nodes; and the canary in no output and no key of any node.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { isVfleetError } from '../../src/model/errors.js';
import { connectRedis } from '../../src/state/connect-redis.js';
import { FleetState } from '../../src/state/fleet-state.js';
import { fetchStateRaw } from '../../src/state/raw-state-read.js';
import { isCluster } from '../../src/state/redis-client.js';
import { everythingIn } from '../helpers/redis-dump.js';
import { CANARY, leaks, mainJob, runner, tlsMainJob } from '../helpers/redis-forms.js';
import {
  MASTER_NAME,
  startRedisSentinel,
  type TestRedisSentinel,
} from '../helpers/redis-sentinel.js';
import { makeTestCerts } from '../helpers/tls-certs.js';
import { vfleet, workdir } from '../helpers/vfleet-cli.js';

describe('REDIS_URL=rediss-sentinel://: the main job over TLS to the Sentinels and the data nodes', () => {
  let sentinel: TestRedisSentinel;
  let cwd: string;
  let certs: string;

  before(async () => {
    certs = mkdtempSync(`${tmpdir()}/vfleet-test-certs-`);
    const tls = makeTestCerts(certs);
    sentinel = await startRedisSentinel({ password: CANARY, replicas: 1, sentinels: 3, tls });
    cwd = workdir();
  });
  after(async () => {
    await sentinel?.stop();
    for (const dir of [cwd, certs]) if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('applies, plans nothing, shows the fleet', () => {
    const env = { REDIS_URL: sentinel.tlsUrl(), NODE_EXTRA_CA_CERTS: `${certs}/ca.crt` };
    tlsMainJob(
      cwd,
      env,
      /^Fleet lab \(state version 32, Redis rediss-sentinel:\/\/:\*\*\*@127\.0\.0\.1:/,
    );
  });
});

describe('REDIS_URL=redis-sentinel://: the main job through three Sentinels', () => {
  let sentinel: TestRedisSentinel;
  let cwd: string;
  const outputs: string[] = [];
  const run = runner(
    () => cwd,
    () => sentinel.url({ db: 3 }),
    outputs,
  );

  before(async () => {
    sentinel = await startRedisSentinel({ password: CANARY, replicas: 1, sentinels: 3 });
    cwd = workdir();
  });
  after(async () => {
    await sentinel?.stop();
    if (cwd) rmSync(cwd, { recursive: true, force: true });
  });

  it('applies fleet.yaml into the master’s database 3, then plans nothing, and shows the fleet', async () => {
    mainJob(
      run,
      new RegExp(
        `^Fleet lab \\(state version 32, Redis redis-sentinel://:\\*\\*\\*@127\\.0\\.0\\.1:\\d+,127\\.0\\.0\\.1:\\d+,127\\.0\\.0\\.1:\\d+/3#${MASTER_NAME}\\)`,
      ),
    );
    const master = sentinel.server(0);
    await master.select(3);
    assert.equal(await master.get('vfleet:{lab}:version'), '32');
    // The replica has it too (replicated, not written there).
    const replica = sentinel.server(1);
    await replica.select(3);
    for (let i = 0; i < 50 && (await replica.get('vfleet:{lab}:version')) !== '32'; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.equal(await replica.get('vfleet:{lab}:version'), '32');
  });

  it('reads the state over a raw connection to the master the Sentinels name', async () => {
    const connection = await connectRedis({
      cwd,
      env: { ...process.env, REDIS_URL: sentinel.url({ db: 3 }) },
    });
    try {
      assert.ok(!isCluster(connection.redis));
      const sentinels = sentinel.sentinels.map((s) => ({ host: '127.0.0.1', port: s.port }));
      const raw = await fetchStateRaw(
        { sentinels, master: MASTER_NAME, password: CANARY, db: 3 },
        'lab',
        2_000,
      );
      const viaIoredis = await new FleetState(connection.redis, 'lab').fetch();
      assert.equal(raw.version, '32');
      assert.deepEqual(raw.hosts, viaIoredis.hosts);
      assert.equal(raw.records.starts.length, 26);
    } finally {
      await connection.close();
    }
  });

  it('refuses a replica that may evict, naming it, with the fix', async () => {
    const replica = sentinel.server(1);
    await replica.config('SET', 'maxmemory-policy', 'allkeys-lru');
    try {
      const status = run(['status']);
      assert.equal(status.code, 1);
      const port = sentinel.servers[1]?.port;
      assert.match(
        status.stderr,
        new RegExp(
          `^vfleet: Redis 127\\.0\\.0\\.1:${port} of redis-sentinel://:\\*\\*\\*@.*has maxmemory-policy allkeys-lru.*CONFIG SET maxmemory-policy noeviction`,
        ),
      );
      assert.equal(status.stderr.trim().split('\n').length, 1);
      await assert.rejects(
        connectRedis({ cwd, env: { ...process.env, REDIS_URL: sentinel.url() } }),
        (e) => isVfleetError(e) && e.code === 'redis-eviction-policy',
      );
    } finally {
      await replica.config('SET', 'maxmemory-policy', 'noeviction');
    }
  });

  it('says what is wrong in one line: a master the Sentinels do not know, no Sentinel answering', () => {
    const unknown = vfleet(['status'], cwd, {
      REDIS_URL: sentinel.url().replace(/#.*$/, '#nosuch'),
    });
    assert.equal(unknown.code, 1);
    assert.match(
      unknown.stderr,
      /^vfleet: cannot connect to Redis at .*: the Sentinels know no master named "nosuch"/,
    );
    const none = vfleet(['status'], cwd, {
      REDIS_URL: 'redis-sentinel://127.0.0.1:1,127.0.0.1:2#m',
    });
    assert.equal(none.code, 1);
    assert.match(none.stderr, /none of the Sentinels answers\n$/);
    outputs.push(unknown.stderr, none.stderr);
  });

  it('shows the password in no output and in no key or value of any node', async () => {
    for (const output of outputs) assert.deepEqual(leaks(output), [], output.slice(0, 300));
    for (let i = 0; i < sentinel.servers.length; i++) {
      const server = sentinel.server(i);
      for (const db of [0, 3]) {
        await server.select(db);
        for (const { key, text } of await everythingIn(server))
          assert.deepEqual(leaks(text), [], key);
      }
    }
  });
});
