// The state read a plan sends before its spec is parsed (app/session.ts, prefetchState): only
// where connecting has no effect of its own, only for the fleet the spec turns out to name, and
// taken once, by refresh.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, it } from 'node:test';
import { planFleet } from '../../src/app/plan.js';
import { fleetNameHint } from '../../src/app/read-spec.js';
import { openSession, prefetchState, readValidSpec } from '../../src/app/session.js';
import { FleetState } from '../../src/state/fleet-state.js';
import { useApplyRedis } from '../helpers/vfleet-cli.js';

function aFile(text: string): string {
  const file = `${mkdtempSync(`${tmpdir()}/vfleet-hint-`)}/fleet.yaml`;
  writeFileSync(file, text);
  return file;
}

describe('fleetNameHint', () => {
  it("reads metadata's name at the block's own indentation, or gives up", () => {
    const cases: Array<[string, string | undefined]> = [
      ['apiVersion: vfleet/v1\nmetadata:\n  name: lab\nspec: {}\n', 'lab'],
      ['metadata: # who\n\n  # the name\n  name: "lab-2" # a label\n', 'lab-2'],
      ["metadata:\n  labels:\n    name: other\n  name: 'lab'\n", 'lab'],
      ['metadata:\n  description: x\nname: top\n', undefined],
      ['metadata: { name: lab }\n', undefined],
      ['spec:\n  name: lab\n', undefined],
    ];
    for (const [text, name] of cases) assert.equal(fleetNameHint(aFile(text)), name, text);
    assert.equal(fleetNameHint('/nonexistent/fleet.yaml'), undefined);
  });
});

describe('prefetchState', () => {
  const f = useApplyRedis();

  it('reads the state of the fleet the spec names before the spec is parsed; refresh takes it once', async () => {
    const dir = await f.fresh();
    const spec = readValidSpec(`${dir}/fleet.yaml`);
    assert.ok(spec.ok);
    const prefetched = await prefetchState(`${dir}/fleet.yaml`, { cwd: dir, env: f.env });
    assert.equal(prefetched?.fleet, spec.fleet.name);
    const session = await openSession(spec, {
      cwd: dir,
      env: f.env,
      ...(prefetched ? { prefetched } : {}),
    });
    try {
      assert.equal(
        session.connection,
        await prefetched?.connection,
        'its connection is the session’s',
      );
      const taken = session.takePrefetchedState();
      assert.ok(taken);
      assert.deepEqual(await session.state.decode(await taken), {
        version: 0,
        hosts: [],
        instances: [],
      });
      assert.equal(session.takePrefetchedState(), undefined, 'taken once');
      const { plan } = await planFleet(session);
      assert.ok(plan.actions.length > 0);
    } finally {
      await session.close();
    }
  });

  it('is not used for another fleet: its connection is closed and the state read again', async () => {
    const dir = await f.fresh();
    const spec = readValidSpec(`${dir}/fleet.yaml`);
    assert.ok(spec.ok);
    const other = aFile('metadata:\n  name: other-fleet\n');
    const prefetched = await prefetchState(other, { cwd: dir, env: f.env });
    assert.equal(prefetched?.fleet, 'other-fleet');
    const session = await openSession(spec, {
      cwd: dir,
      env: f.env,
      ...(prefetched ? { prefetched } : {}),
    });
    try {
      const early = await prefetched?.connection;
      assert.ok(early);
      assert.notEqual(session.connection, early);
      assert.equal(early.redis.status, 'end');
      assert.equal(session.takePrefetchedState(), undefined);
      await new FleetState(session.connection.redis, spec.fleet.name).readAll();
    } finally {
      await session.close();
    }
  });

  it('starts no private redis-server: without REDIS_URL and none running, there is none', async () => {
    const dir = await f.fresh();
    assert.equal(await prefetchState(`${dir}/fleet.yaml`, { cwd: dir, env: {} }), undefined);
    assert.equal(existsSync(`${dir}/.vfleet`), false);
  });
});
