// REDIS_URL=redis-cluster:// and rediss-cluster:// end to end (issue 17), against a real
// 3-master Redis Cluster the test starts (helpers/redis-cluster.ts), with a canary password: the
// main job — `vfleet apply --auto-approve` of the root fleet.yaml on the embedded engine — then
// `vfleet plan` (converged) and `vfleet status`; moves (a flow across two host queues) and the
// controller (a crashed host's instance restarted); the fleet's keys, BullMQ's included, in one
// slot on one master; the one-line errors; TLS to every node; and the canary in no output and no
// key of any node.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { startRedisCluster, type TestRedisCluster } from '../helpers/redis-cluster.js';
import { everythingIn } from '../helpers/redis-dump.js';
import { CANARY, CONVERGED, leaks, mainJob, runner, tlsMainJob } from '../helpers/redis-forms.js';
import { makeTestCerts } from '../helpers/tls-certs.js';
import { pollUntil, type StatusJson, spawnVfleet, vfleet, workdir } from '../helpers/vfleet-cli.js';

describe('REDIS_URL=redis-cluster://: the main job on a 3-master Cluster', () => {
  let cluster: TestRedisCluster;
  let cwd: string;
  const outputs: string[] = [];
  const children: ChildProcess[] = [];
  const run = runner(
    () => cwd,
    () => cluster.url(),
    outputs,
  );

  before(async () => {
    cluster = await startRedisCluster({ password: CANARY });
    cwd = workdir();
  });
  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await cluster?.stop();
    if (cwd) rmSync(cwd, { recursive: true, force: true });
  });

  it('applies fleet.yaml, then plans nothing, and shows the fleet', () => {
    mainJob(
      run,
      /^Fleet lab \(state version 32, Redis redis-cluster:\/\/:\*\*\*@127\.0\.0\.1:\d+,/,
    );
  });

  it('drains a host: moves, each a flow across two host queues, done, and the plan converged', () => {
    const drain = run(['host', 'drain', 'ct-r3-03', '--auto-approve']);
    // cache-2 has nowhere else to go (its labels, its anti-affinity): the 8 batch moves are done.
    assert.match(drain.stdout, /Plan: 0 to create, 8 to move/);
    assert.match(drain.stdout, /8 actions done/);
    assert.doesNotMatch(drain.stdout + drain.stderr, /CROSSSLOT|failed/);
    assert.match(run(['plan']).stdout, CONVERGED);
  });

  it('runs the controller: a crashed host is lost, its instance restarted elsewhere, /metrics answers', async () => {
    const env = { REDIS_URL: cluster.url(), VFLEET_EMBEDDED_BOOT_MS: '0' };
    const controller = spawnVfleet(
      ['controller', '--lease-ttl', '1s', '--interval', '3s', '--http', '127.0.0.1:0'],
      cwd,
      env,
      children,
    );
    try {
      const url = await pollUntil(
        'the controller serving',
        () => /serving (http:\/\/127\.0\.0\.1:\d+)/.exec(controller.output())?.[1],
      );
      await pollUntil('the controller leading', () =>
        / leader\b/.test(controller.output()) ? true : undefined,
      );
      const fail = run(['host', 'fail', 'hv-r1-02']);
      assert.equal(fail.code, 0, fail.stderr);
      const restarted = await pollUntil('api-2 restarted on another host', () => {
        const status = JSON.parse(run(['status', '--json']).stdout) as StatusJson;
        const api2 = status.instances.find((i) => i.instance === 'api-2');
        return api2 && api2.host !== 'hv-r1-02' && api2.status === 'running' ? api2 : undefined;
      });
      assert.notEqual(restarted.host, 'hv-r1-02');
      const metrics = await fetch(`${url}/metrics`).then((r) => r.text());
      assert.match(metrics, /vfleet_hosts\{health="lost"\} 1/);
      assert.equal((await fetch(`${url}/queues`)).status, 200);
    } finally {
      controller.child.kill('SIGTERM');
      outputs.push(controller.output());
      await controller.exited;
    }
    assert.equal(run(['host', 'recover', 'hv-r1-02']).code, 0);
  });

  it('keeps the fleet in one slot: every key on one master, under vfleet:{lab}:, BullMQ’s too', async () => {
    const keysPerNode = await Promise.all(
      cluster.nodes.map(async (_n, i) => (await cluster.node(i).keys('*')).sort()),
    );
    const holding = keysPerNode.filter((keys) => keys.length > 0);
    assert.equal(holding.length, 1, 'the keys are on one node');
    const keys = holding[0] as string[];
    assert.deepEqual(
      keys.filter((k) => !k.startsWith('vfleet:{lab}:')),
      [],
    );
    assert.ok(keys.some((k) => k.startsWith('vfleet:{lab}:bull:host.ct-r2-03:')));
    const slots = new Set(
      await Promise.all(keys.slice(0, 50).map((k) => cluster.node(0).cluster('KEYSLOT', k))),
    );
    assert.equal(slots.size, 1);
  });

  it('says what is wrong in one line: a wrong password, redis:// naming a node, no seed answering', () => {
    const cases: Array<[string, RegExp]> = [
      [
        cluster.url(':wrong-password@'),
        /: WRONGPASS .*\(check the user name and password in REDIS_URL\)$/,
      ],
      [cluster.url(''), /: NOAUTH: the server wants a password and REDIS_URL has none/],
      [
        `redis://:${encodeURIComponent(CANARY)}@127.0.0.1:${cluster.nodes[0]?.port}`,
        /^vfleet: REDIS_URL names a node of a Redis Cluster: use redis-cluster:\/\//,
      ],
      ['redis-cluster://127.0.0.1:1,127.0.0.1:2', /: none of the seed nodes answers$/],
    ];
    for (const [url, reason] of cases) {
      const status = vfleet(['status'], cwd, { REDIS_URL: url });
      outputs.push(status.stdout + status.stderr);
      assert.equal(status.code, 1, status.stdout);
      const lines = status.stderr.trim().split('\n');
      assert.equal(lines.length, 1, status.stderr);
      assert.match(lines[0] as string, reason);
    }
  });

  it('shows the password in no output and in no key or value of any node', async () => {
    for (const output of outputs) assert.deepEqual(leaks(output), [], output.slice(0, 300));
    for (let i = 0; i < cluster.nodes.length; i++) {
      for (const { key, text } of await everythingIn(cluster.node(i))) {
        assert.deepEqual(leaks(text), [], key);
      }
    }
  });
});

describe('REDIS_URL=rediss-cluster://: the main job over TLS to every node', () => {
  let cluster: TestRedisCluster;
  let cwd: string;
  let certs: string;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    certs = mkdtempSync(`${tmpdir()}/vfleet-test-certs-`);
    const tls = makeTestCerts(certs);
    cluster = await startRedisCluster({ password: CANARY, tls });
    cwd = workdir();
    // vfleet trusts the test's authority as it would a private CA: through Node's own variable.
    env = { REDIS_URL: cluster.tlsUrl(), NODE_EXTRA_CA_CERTS: tls.ca };
  });
  after(async () => {
    await cluster?.stop();
    for (const dir of [cwd, certs]) if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('applies, plans nothing, shows the fleet; refuses a server it cannot verify', () => {
    tlsMainJob(
      cwd,
      env,
      /^Fleet lab \(state version 32, Redis rediss-cluster:\/\/:\*\*\*@127\.0\.0\.1:/,
    );
    // Without the authority, the nodes' certificate is not trusted: one line, no password.
    const untrusted = vfleet(['status'], cwd, { REDIS_URL: cluster.tlsUrl() });
    assert.equal(untrusted.code, 1);
    assert.match(
      untrusted.stderr,
      /^vfleet: cannot connect to Redis at rediss-cluster:\/\/:\*\*\*@.*: none of the seed nodes answers, or none has a certificate this machine trusts \(a private authority: NODE_EXTRA_CA_CERTS=/,
    );
    assert.deepEqual(leaks(untrusted.stdout + untrusted.stderr), []);
  });
});
