// A Redis Cluster master failover in the middle of `vfleet apply` (issue 17, fault 2), on a real
// Cluster of 3 masters with a replica each (helpers/redis-cluster.ts): `CLUSTER FAILOVER` sent to
// the replica of the master that holds the fleet's slot, once the apply is under way, whose jobs
// a `vfleet worker` serves. The apply and the worker must follow the new master and converge:
// exit 0, every instance of the spec on exactly one host, never two copies at any sample, no
// action reported done twice in a round, no stack trace, no password.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import {
  applyUnderWay,
  assertConverged,
  assertNoneTwiceInARound,
} from '../helpers/fleet-faults.js';
import { startRedisCluster, type TestRedisCluster } from '../helpers/redis-cluster.js';
import { CANARY, leaks } from '../helpers/redis-forms.js';
import { pollUntil, spawnVfleet, workdir } from '../helpers/vfleet-cli.js';

describe('a Cluster master failover mid-apply', () => {
  let cluster: TestRedisCluster;
  let cwd = '';
  const children: ChildProcess[] = [];

  before(async () => {
    cluster = await startRedisCluster({ password: CANARY, replicasPerMaster: 1 });
    cwd = workdir();
  });
  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await cluster?.stop();
    if (cwd) rmSync(cwd, { recursive: true, force: true });
  });

  it('the apply and a vfleet worker follow the new master and converge', {
    timeout: 180_000,
  }, async (t) => {
    const env = { REDIS_URL: cluster.url(), VFLEET_EMBEDDED_BOOT_MS: '150' };
    // The master holding the fleet's slot, and its replica (CLUSTER NODES: id, address, flags,
    // master id, …, slot ranges).
    const any = cluster.node(0);
    const slot = Number(await any.cluster('KEYSLOT', 'vfleet:{lab}:version'));
    const nodes = String(await any.cluster('NODES'))
      .trim()
      .split('\n')
      .map((l) => l.split(' '));
    const master = nodes.find(
      (n) =>
        n[2]?.includes('master') &&
        n.slice(8).some((range) => {
          const [from, to = from] = range.split('-').map(Number);
          return (from as number) <= slot && slot <= (to as number);
        }),
    );
    const replica = nodes.find((n) => n[3] === master?.[0]);
    const port = (n: string[] | undefined) => Number(/:(\d+)@/.exec(n?.[1] ?? '')?.[1]);
    const replicaIndex = cluster.nodes.findIndex((n) => n.port === port(replica));
    assert.ok(master && replica && replicaIndex >= 0, nodes.join('\n'));

    const worker = spawnVfleet(['worker'], cwd, env, children);
    await pollUntil('the worker serving', () =>
      /serving/.test(worker.output()) ? true : undefined,
    );
    const client = cluster.client();
    const apply = await applyUnderWay(cwd, env, children, client);
    const promoted = cluster.node(replicaIndex);
    assert.equal(await promoted.cluster('FAILOVER'), 'OK');
    const failedOverAt = Date.now();
    const code = await apply.exited;
    const { samples, doubled } = await apply.sampler.stop();
    const output = apply.output();
    t.diagnostic(
      `apply exit ${code} ${Date.now() - failedOverAt} ms after CLUSTER FAILOVER; ${samples} samples of the hosts`,
    );

    assert.equal(code, 0, output);
    assert.match(output, /Apply complete: 32 actions done\./);
    assert.doesNotMatch(output, /\n\s+at |internal error/);
    assert.match(await promoted.info('replication'), /role:master/, 'the replica was promoted');
    assert.deepEqual(doubled, [], `never two copies (${samples} samples)`);
    assertNoneTwiceInARound(apply.stdout());
    await assertConverged(client, cwd, env);

    assert.equal(worker.child.exitCode, null, worker.output());
    worker.child.kill('SIGTERM');
    assert.equal(await worker.exited, 0, worker.output());
    assert.doesNotMatch(worker.output(), /\n\s+at |internal error/);
    for (const text of [output, worker.output()]) assert.deepEqual(leaks(text), []);
  });
});
