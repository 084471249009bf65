// The application layer as a library, the way the controller will call it: a session on a real
// redis-server (REDIS_URL) with the embedded engine, plan → apply → status → host fault → plan,
// each returning data and events — and printing nothing.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type ApplyEvent, applyFleet } from '../../src/app/apply.js';
import { injectFault } from '../../src/app/hosts.js';
import { planFleet } from '../../src/app/plan.js';
import { openSession, readValidSpec } from '../../src/app/session.js';
import { fleetStatus } from '../../src/app/status.js';
import { useApplyRedis } from '../helpers/vfleet-cli.js';

/** Everything written to stdout and stderr while `act` runs. */
async function printed<T>(act: () => Promise<T>): Promise<{ value: T; text: string }> {
  const chunks: string[] = [];
  const out = process.stdout.write.bind(process.stdout);
  const err = process.stderr.write.bind(process.stderr);
  const capture = (chunk: string | Uint8Array) => {
    chunks.push(String(chunk));
    return true;
  };
  process.stdout.write = capture as typeof process.stdout.write;
  process.stderr.write = capture as typeof process.stderr.write;
  try {
    return { value: await act(), text: chunks.join('') };
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
  }
}

describe('app/: the operations as library functions', () => {
  const f = useApplyRedis();

  it('plan, apply, status and a host fault return data and events, and print nothing', async () => {
    const dir = await f.fresh();
    const spec = readValidSpec(`${dir}/fleet.yaml`);
    assert.ok(spec.ok, 'the example fleet is valid');
    const session = await openSession(spec, {
      cwd: dir,
      env: { ...f.env, VFLEET_EMBEDDED_BOOT_MS: '0' },
    });
    try {
      const { value, text } = await printed(async () => {
        const planned = await planFleet(session);
        const events: ApplyEvent[] = [];
        const asked: string[] = [];
        const applied = await applyFleet(session, {
          approve: async (plan) => {
            asked.push(plan.id);
            return true;
          },
          concurrency: 4,
          externalWorkers: false,
          takeoverMs: 30_000,
          onEvent: (e) => events.push(e),
        });
        const status = await fleetStatus(session);
        const [victim] = session.fleet.hosts;
        await injectFault(session, victim?.name as string, 'fail');
        const afterFault = await fleetStatus(session);
        await injectFault(session, victim?.name as string, 'recover');
        const again = await planFleet(session);
        return { planned, applied, events, asked, status, afterFault, again, victim };
      });
      assert.equal(text, '', 'nothing in app/ prints');
      const { planned, applied, events, asked, status, afterFault, again, victim } = value;
      assert.ok(planned.plan.actions.length > 0);
      assert.equal(applied.status, 'applied');
      if (applied.status !== 'applied') return;
      // The plan apply ran is the one planned before it: same inputs, same id.
      assert.equal(applied.plan.id, planned.plan.id);
      assert.deepEqual(asked, [applied.plan.id]);
      assert.equal(applied.outcomes.length, applied.plan.actions.length);
      assert.ok(applied.outcomes.every((o) => o.outcome === 'done'));
      // Events: the plan, then running, then one outcome per action.
      const kinds = events.map((e) => e.type);
      assert.deepEqual(kinds.slice(0, 2), ['plan', 'running']);
      assert.equal(kinds.filter((k) => k === 'outcome').length, applied.plan.actions.length);
      // Status: every created instance running, as many as the plan created, no drift.
      const created = applied.plan.actions.filter((a) => a.kind === 'create').length;
      assert.equal(status.instances.length, created);
      assert.ok(status.instances.every((i) => i.status === 'running'));
      const d = status.drift;
      assert.equal(d.create + d.move + d.update + d.patch + d.destroy, 0);
      assert.ok(status.hosts.every((h) => h.health === 'ok'));
      // No controller judges: the failed host does not answer, so it is at least suspect, its
      // fault is shown, and its instances are unknown, never running.
      const failedHost = afterFault.hosts.find((h) => h.name === victim?.name);
      assert.equal(failedHost?.health, 'suspect');
      assert.equal(failedHost?.fault, 'failed');
      assert.equal(failedHost?.judgedBy, 'observer');
      assert.equal(failedHost?.running, null);
      const onVictim = afterFault.instances.filter((i) => i.host === victim?.name);
      assert.ok(onVictim.length > 0);
      assert.ok(onVictim.every((i) => i.status === 'unknown'));
      // Without a controller's judgement (or an operator's fence) nothing restarted elsewhere;
      // back, the crashed host's instances (stopped with it, not resumed) are started in place.
      assert.deepEqual(
        again.plan.actions.map((a) => `${a.kind} ${a.instance} on ${a.host}`).sort(),
        onVictim.map((i) => `start ${i.instance} on ${victim?.name}`).sort(),
      );
    } finally {
      await session.close();
    }
  });
});
