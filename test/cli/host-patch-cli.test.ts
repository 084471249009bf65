// `vfleet host patch` on the embedded default (docs/patching.md, "Hosts"): three racks of two
// hosts, `failover: {tolerate: 1, domain: rack}`, protected VMs and sandboxes. Every host is
// patched; sampled while the rollout runs (one MULTI: the drained set and every host's
// instances), never hosts of two racks drained at once, every protected VM running exactly once
// throughout (live migration), every sandbox running and never twice outside the drained hosts
// (its move starts the copy before it stops the source), and a protected instance without a
// failover host outside its own rack only when that lost reserve is on the rack drained now. A
// rollout that cannot empty a host stops there, the host left drained and said in one line.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { FleetState } from '../../src/state/fleet-state.js';
import { engineHostKeys, fleetKeys } from '../../src/state/keys.js';
import { aFleetDocument, aGroup, aHost, anImage, toYaml } from '../helpers/spec-builders.js';
import {
  fleetEvents,
  type StatusJson,
  spawnVfleet,
  useApplyRedis,
  vfleet,
  workdir,
} from '../helpers/vfleet-cli.js';

const RACKS = ['r1', 'r2', 'r3'];
const HOSTS = RACKS.flatMap((r) => [`${r}-hv1`, `${r}-hv2`]);
const rackOf = (host: string) => host.slice(0, 2);
const VMS = ['db-0', 'db-1', 'db-2'];
const ALL = [...VMS, ...Array.from({ length: 6 }, (_, i) => `web-${i}`)];

function rackFleet(name: string): string {
  const doc = aFleetDocument({
    hosts: HOSTS.map((h) =>
      aHost({
        name: h,
        labels: { rack: rackOf(h) },
        memoryMiB: 16384,
        cpu: { sockets: 1, coresPerSocket: 8, threadsPerCore: 1 },
      }),
    ) as [ReturnType<typeof aHost>],
    licenses: [],
    patchBaselines: [],
    images: [
      anImage({ name: 'vm-12', kind: 'vm', source: { disk: 'vm.qcow2' }, packages: {} }),
      anImage({ packages: {} }),
    ],
    failover: { tolerate: 1, domain: 'rack' },
    instances: [
      aGroup({
        name: 'db',
        image: 'vm-12',
        replicas: 3,
        failover: true,
        placement: { strategy: 'spread' },
      }),
      aGroup({ name: 'web', replicas: 6, placement: { strategy: 'spread' } }),
    ],
  });
  return toYaml({ ...doc, metadata: { ...doc.metadata, name } });
}

describe('vfleet host patch', () => {
  const redisServer = useApplyRedis();
  const children: ChildProcess[] = [];
  // What a failed test left running.
  after(() => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  });

  it('patches every host rack by rack, within the failover reserve, each instance once', async () => {
    const cwd = await redisServer.fresh();
    const env = { ...redisServer.env, VFLEET_EMBEDDED_BOOT_MS: '0' };
    writeFileSync(`${cwd}/fleet.yaml`, rackFleet('roll'));
    const applied = vfleet(['apply', '--auto-approve'], cwd, env);
    assert.equal(applied.code, 0, applied.stderr);

    const redis = redisServer.server.client();
    const state = new FleetState(redis, 'roll');
    const drainedKey = fleetKeys('roll').drained;
    const sample = async () => {
      const tx = redis.multi().smembers(drainedKey);
      for (const h of HOSTS) tx.hgetall(engineHostKeys('roll', h).instances);
      const replies = (await tx.exec()) ?? [];
      const [drained, ...perHost] = replies.map(([, v]) => v);
      const running = new Map<string, string[]>();
      perHost.forEach((records, i) => {
        for (const json of Object.values(records as Record<string, string>)) {
          const r = JSON.parse(json) as { instance: string; status: string };
          if (r.status === 'running')
            running.set(r.instance, [...(running.get(r.instance) ?? []), HOSTS[i] as string]);
        }
      });
      return { drained: drained as string[], running };
    };

    const child = spawnVfleet(
      ['host', 'patch', '--all', '--auto-approve', '--reboot', '300ms'],
      cwd,
      { ...process.env, ...env },
      children,
    );
    let exit: number | null | undefined;
    void child.exited.then((code) => {
      exit = code;
    });
    const seenDrained = new Set<string>();
    let samples = 0;
    let twice = 0;
    while (exit === undefined) {
      const s = await sample();
      samples++;
      const racks = new Set(s.drained.map(rackOf));
      assert.ok(racks.size <= 1, `two racks drained at once: ${s.drained}`);
      for (const r of racks) seenDrained.add(r);
      // VMs migrate live: exactly once, always. A sandbox's move is make-before-break (copy-disk,
      // move-in, then move-out stops the source): never down, and for that moment a second copy
      // on the drained host it leaves — never two copies outside the drain.
      for (const vm of VMS)
        assert.deepEqual(s.running.get(vm)?.length, 1, `${vm}: ${s.running.get(vm)}`);
      for (const name of ALL) {
        const on = s.running.get(name) ?? [];
        assert.ok(on.length >= 1, `${name} not running`);
        const outside = on.filter((h) => !s.drained.includes(h));
        const where = `${name} runs on ${on.join(' and ')} (drained: ${s.drained})`;
        assert.ok(outside.length <= 1 && on.length <= 2, where);
        if (on.length === 2) {
          assert.equal(outside.length, 1, where);
          twice++;
        }
      }
      // The failover reserve, from the state: lost only to the rack drained now.
      const { instances } = await state.readAll();
      const still = await sample();
      if (still.drained.join() === s.drained.join()) {
        for (const i of instances.filter((x) => VMS.includes(x.instance))) {
          const reserve = i.failoverHost;
          const covered =
            reserve !== null && rackOf(reserve) !== rackOf(i.host) && !s.drained.includes(reserve);
          if (covered) continue;
          const down = [...racks];
          assert.ok(
            down.includes(rackOf(i.host)) || (reserve !== null && down.includes(rackOf(reserve))),
            `${i.instance} on ${i.host} without a failover host (${reserve}) while ${down} drains`,
          );
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    assert.equal(exit, 0, child.output());
    assert.deepEqual([...seenDrained].sort(), RACKS, `sampled ${samples} times`);
    process.stderr.write(`# ${samples} samples, ${twice} with a sandbox mid-move on two hosts\n`);

    const events = fleetEvents(cwd, env);
    const patched = events.filter((e) => e.type === 'host-patched').map((e) => e.host);
    assert.deepEqual([...patched].sort(), [...HOSTS].sort(), 'every host patched once');
    for (const r of RACKS) {
      assert.match(
        child.output(),
        new RegExp(`wave \\d: ${r}-hv1, ${r}-hv2 {2}\\(rack ${r};.*failover 3 of 3 covered`),
      );
    }

    const status = JSON.parse(vfleet(['status', '--json'], cwd, env).stdout) as StatusJson;
    assert.deepEqual(
      status.hosts.map((h) => h.health),
      HOSTS.map(() => 'ok'),
    );
    assert.deepEqual(status.instances.map((i) => i.instance).sort(), [...ALL].sort());
    for (const i of status.instances) assert.equal(i.status, 'running', i.instance);
    const end = await sample();
    for (const name of ALL) assert.equal(end.running.get(name)?.length, 1, name);
    const plan = vfleet(['plan', '--json'], cwd, env);
    const failover = (
      JSON.parse(plan.stdout) as { failover: { protected: number; covered: number } }
    ).failover;
    assert.deepEqual(failover, { ...failover, protected: 3, covered: 3 }, 'every reserve back');
    redis.disconnect();
  });

  it('stops at a host it cannot empty, left drained, in one line; later waves not started', async () => {
    const cwd = await redisServer.fresh();
    const env = redisServer.env;
    writeFileSync(`${cwd}/fleet.yaml`, rackFleet('stuck'));
    assert.equal(vfleet(['apply', '--auto-approve'], cwd, env).code, 0);
    const status = () => JSON.parse(vfleet(['status', '--json'], cwd, env).stdout) as StatusJson;
    const victim = status().instances[0]?.host as string;
    // Cut off, its instances cannot be moved: the drain's apply leaves them where they are.
    assert.equal(vfleet(['host', 'partition', victim], cwd, env).code, 0);
    const other = HOSTS.find((h) => rackOf(h) !== rackOf(victim)) as string;
    const r = vfleet(['host', 'patch', victim, other, '--auto-approve', '--json'], cwd, env);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    assert.match(r.stderr, new RegExp(`wave 1 stopped at the drain .*; ${victim} left drained`));
    const result = JSON.parse(r.stdout) as { ok: boolean; waves: unknown[]; planned: unknown[] };
    assert.equal(result.ok, false);
    assert.equal(result.planned.length, 2, 'two waves planned: two racks');
    assert.equal(result.waves.length, 1, 'the second wave never started');
    const events = fleetEvents(cwd, env);
    assert.deepEqual(
      events.filter((e) => e.type === 'host-patched'),
      [],
    );
    assert.ok(events.some((e) => e.type === 'host-draining' && e.host === victim));
    assert.ok(
      !events.some((e) => e.type === 'host-undrained' && e.host === victim),
      'left drained',
    );
    assert.ok(!events.some((e) => e.type === 'host-draining' && e.host === other));

    const unknown = vfleet(['host', 'patch', 'nope', '--auto-approve'], cwd, env);
    assert.equal(unknown.code, 1);
    assert.equal(unknown.stderr.trim().split('\n').length, 1, unknown.stderr);
    assert.match(unknown.stderr, /no host nope/);
    // A real host: refused before anything is drained, in one line naming what is not built.
    const local = workdir();
    writeFileSync(
      `${local}/fleet.yaml`,
      toYaml({
        apiVersion: 'vfleet/v1',
        kind: 'Fleet',
        metadata: { name: 'realpatch' },
        spec: {
          failover: { tolerate: 0 },
          hosts: [
            aHost({ name: 'emu', labels: {} }),
            { ...aHost({ name: 'here', labels: {} }), engine: 'local', dataDir: `${local}/data` },
          ],
          images: [],
          instances: [],
        },
      }),
    );
    const real = vfleet(['host', 'patch', '--all', '--auto-approve'], local, env);
    assert.equal(real.code, 1, real.stdout + real.stderr);
    const refusal = real.stderr.split('\n').filter((l) => l.startsWith('vfleet:'));
    assert.equal(refusal.length, 1, real.stderr);
    assert.match(refusal[0] as string, /cannot patch here: patching a local host .* is not built/);
    assert.doesNotMatch(real.stderr, /\n\s+at /);
    assert.deepEqual(
      fleetEvents(local, env).filter((e) => e.type === 'host-draining'),
      [],
      'nothing drained',
    );
    const neither = vfleet(['host', 'patch', '--auto-approve'], cwd, env);
    assert.notEqual(neither.code, 0);
    assert.match(neither.stderr, /name the hosts to patch, or --all/);
  });
});
