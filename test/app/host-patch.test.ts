// app/host-patch.ts as a library (docs/patching.md, "Hosts"): the waves from the state, a name
// the spec lacks refused, a drained host's patch level raised and recorded, and waiting until a
// host is healthy — given up at its bound for a host that does not answer, ok once it does.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import {
  hostRolloutOf,
  patchDrainedHost,
  waitHostHealthy,
  waveLoses,
} from '../../src/app/host-patch.js';
import { injectFault } from '../../src/app/hosts.js';
import { openSession, readValidSpec } from '../../src/app/session.js';
import { VfleetError } from '../../src/model/errors.js';
import { aGroup, threeHostVmFleet, toYaml } from '../helpers/spec-builders.js';
import { useApplyRedis } from '../helpers/vfleet-cli.js';

describe('app/host-patch', () => {
  const f = useApplyRedis();

  it('plans the waves, patches a host, waits for its health within a bound', async () => {
    const dir = await f.fresh();
    writeFileSync(
      `${dir}/fleet.yaml`,
      toYaml(threeHostVmFleet('lib', { instances: [aGroup({ name: 'web', replicas: 3 })] })),
    );
    const spec = readValidSpec(`${dir}/fleet.yaml`);
    assert.ok(spec.ok);
    const session = await openSession(spec, { cwd: dir, env: { ...f.env } });
    try {
      const hosts = session.fleet.hosts.map((h) => h.name);
      const rollout = await hostRolloutOf(session, []);
      assert.ok(rollout.ok, JSON.stringify(rollout));
      // domain: host, tolerate: 1 (the defaults): one host a wave.
      assert.deepEqual(
        rollout.waves.map((w) => w.hosts),
        hosts.map((h) => [h]),
      );
      for (const w of rollout.waves) assert.deepEqual(await waveLoses(session, w.hosts), []);
      await assert.rejects(
        hostRolloutOf(session, ['nope']),
        (e) => e instanceof VfleetError && e.code === 'unknown-host',
      );

      const host = hosts[0] as string;
      assert.equal((await patchDrainedHost(session, host, 0)).level, 1);
      assert.equal((await patchDrainedHost(session, host, 0)).level, 2);
      assert.deepEqual(await waitHostHealthy(session, host, 1_000, 20), { ok: true, health: 'ok' });

      await injectFault(session, host, 'fail');
      assert.deepEqual(await waitHostHealthy(session, host, 200, 20), {
        ok: false,
        health: 'unanswering',
      });
      await assert.rejects(patchDrainedHost(session, host, 0), /unreachable|not answer|down/i);
      await injectFault(session, host, 'recover');
      assert.equal((await waitHostHealthy(session, host, 5_000, 20)).ok, true);
    } finally {
      await session.close();
    }
  });
});
