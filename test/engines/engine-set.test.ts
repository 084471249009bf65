// engines/engine-set.ts: each host's engine (and a real host's transport) chosen by its
// `engine:`, its capabilities the table's row, and faults injected through the set.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { type EngineSet, openEngineSet } from '../../src/engines/engine-set.js';
import { ENGINE_CAPABILITIES } from '../../src/model/engine-capabilities.js';
import { isVfleetError } from '../../src/model/errors.js';
import type { Fleet, Host } from '../../src/model/fleet.js';
import { aModelHost } from '../helpers/hosts.js';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';
import { rootFleet } from '../helpers/root-fleet.js';

const pinned = 'SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU';
const ssh = (name: string, hostKey: string): Host =>
  aModelHost({
    name,
    engine: 'ssh',
    // Nothing listens on port 1 of this address: a call is refused, after the attempt.
    ssh: { address: '127.0.0.9', port: 1, user: 'root', hostKey },
  });

describe('EngineSet', () => {
  const options = () => ({
    redis: server.client(),
    bootLatencyMs: 0,
    currentPlanKey: 'vfleet:{set}:current-plan',
    commandTimeoutMs: 30_000,
    real: {},
  });
  let server: TestRedisServer;
  let dataDir: string;
  let set: EngineSet;
  before(async () => {
    server = await startRedisServer();
    dataDir = mkdtempSync(`${tmpdir()}/vfleet-engine-set-`);
    const fleet: Fleet = {
      ...rootFleet(),
      name: 'set',
      hosts: [
        aModelHost({ name: 'emu-01' }),
        aModelHost({ name: 'emu-02' }),
        aModelHost({ name: 'here-01', engine: 'local', dataDir }),
        ssh('far-01', pinned),
      ],
    };
    set = await openEngineSet(fleet, options());
  });
  after(async () => {
    await set?.close();
    await server?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("builds each host's engine by its engine: field, with that engine's capabilities", () => {
    for (const [host, kind] of [
      ['emu-01', 'embedded'],
      ['here-01', 'local'],
      ['far-01', 'ssh'],
    ] as const) {
      const engine = set.engine(host);
      assert.equal(engine.host, host);
      assert.equal(engine.engine, kind);
      assert.equal(engine.capabilities, ENGINE_CAPABILITIES[kind]);
      assert.equal(set.capabilities(host), ENGINE_CAPABILITIES[kind]);
      assert.equal(set.engine(host), engine, 'one engine per host');
    }
    assert.throws(() => set.engine('nowhere'), /no host nowhere/);
  });

  it('drives a local host on this machine and an ssh host over ssh', async () => {
    assert.deepEqual(await set.engine('here-01').list(), []);
    // No agent and no key file here, or no server there: either way an ssh failure.
    await assert.rejects(set.engine('far-01').list(), /far-01.*(SSH_AUTH_SOCK|127\.0\.0\.9)/);
    // The pinned key is checked when the engine is made, before any connection.
    const badKey = await openEngineSet(
      { ...rootFleet(), name: 'set', hosts: [ssh('bad-key', 'ssh-ed25519 AAAA')] },
      options(),
    );
    assert.throws(() => badKey.engine('bad-key'), /hostKey/);
    await badKey.close();
  });

  it('injects faults where the engine takes them, and tells which host is under which', async () => {
    assert.deepEqual(await set.failed(), new Map());
    await set.inject('emu-01', 'fail');
    await set.inject('emu-02', 'partition');
    assert.deepEqual(
      await set.failed(),
      new Map([
        ['emu-01', 'failed'],
        ['emu-02', 'partitioned'],
      ]),
    );
    const survey = await set.survey();
    assert.equal(survey.listings.get('emu-01'), null, 'a failed host does not answer');
    assert.equal(survey.listings.get('emu-02'), null, 'nor does a partitioned one');
    await assert.rejects(
      set.inject('here-01', 'partition'),
      (e) => isVfleetError(e) && e.code === 'not-embedded' && /local engine/.test(e.message),
    );
    await set.inject('emu-01', 'recover');
    await set.inject('emu-02', 'recover');
    assert.deepEqual(await set.failed(), new Map());
  });
});
