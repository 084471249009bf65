// `vfleet destroy` and `plan --destroy` as a user runs them, on the embedded engine against a
// test redis-server (REDIS_URL): a destroy removes every instance from the state and from the
// emulated hosts, a second has nothing to do, no terminal and no --auto-approve is refused, a
// saved destroy plan is applied (once: then it is stale), and a host that does not answer fails
// its destroys until it recovers.
import assert from 'node:assert/strict';
import { copyFileSync, cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { engineHostKeys } from '../../src/state/keys.js';
import { fromRoot } from '../helpers/paths.js';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';
import { vfleet as run } from '../helpers/vfleet-cli.js';

const HOSTS = ['r1', 'r2', 'r3'].flatMap((r) => [`hv-${r}-01`, `hv-${r}-02`, `ct-${r}-03`]);
const PLANNED_DESTROY = /Plan: 0 to create, 0 to move, 0 to update, 0 to patch, 26 to destroy\./;

describe('vfleet destroy', () => {
  let server: TestRedisServer;
  let env: NodeJS.ProcessEnv;
  const dirs: string[] = [];
  before(async () => {
    server = await startRedisServer({ args: ['--maxmemory-policy', 'noeviction'], tcp: true });
    env = { REDIS_URL: `${server.url}/0` };
  });
  after(async () => {
    await server.stop();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  const vfleet = (args: string[], cwd: string) => run(args, cwd, env);

  /** A folder with fleet.yaml, applied: 26 instances on 9 emulated hosts. */
  async function applied(): Promise<string> {
    await server.client().flushall();
    const dir = mkdtempSync(`${tmpdir()}/vfleet-destroy-`);
    dirs.push(dir);
    copyFileSync(fromRoot('fleet.yaml'), `${dir}/fleet.yaml`);
    cpSync(fromRoot('examples', 'inventories'), `${dir}/examples/inventories`, { recursive: true });
    const apply = vfleet(['apply', '--auto-approve'], dir);
    assert.equal(apply.code, 0, apply.stderr);
    return dir;
  }

  /** Instance names as the state records them. */
  async function recorded(): Promise<string[]> {
    return (await server.client().hkeys('vfleet:{lab}:instances')).sort();
  }

  /** Instance names as the emulated hosts run them (the embedded engine's own keys). */
  async function onHosts(): Promise<string[]> {
    const names: string[] = [];
    for (const host of HOSTS)
      names.push(...(await server.client().hkeys(engineHostKeys('lab', host).instances)));
    return names.sort();
  }

  it('removes every instance from the state and the hosts; a second has nothing to destroy', async () => {
    const dir = await applied();
    assert.equal((await recorded()).length, 26);
    assert.deepEqual(await onHosts(), await recorded());
    const destroy = vfleet(['destroy', '--auto-approve'], dir);
    assert.equal(destroy.code, 0, destroy.stderr);
    assert.match(destroy.stdout, /^ {2}- destroy web-0 on \S+: destroy requested$/m);
    assert.match(destroy.stdout, PLANNED_DESTROY);
    assert.match(destroy.stdout, /^ {2}backup-agent \(instance\): [1-9]\d* → 0 of 10 /m);
    assert.match(destroy.stdout, /Destroy complete: 26 actions done\./);
    assert.doesNotMatch(destroy.stdout, /to create, [^0]|^ {2}\+ /m);
    assert.deepEqual(await recorded(), []);
    assert.deepEqual(await onHosts(), []);

    const again = vfleet(['destroy', '--auto-approve'], dir);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /^No changes\. Nothing to destroy: fleet lab has no instances\./);
    assert.match(
      again.stdout,
      /Plan: 0 to create, 0 to move, 0 to update, 0 to patch, 0 to destroy\./,
    );
  });

  it('refuses without --auto-approve when no one can answer, and destroys nothing', async () => {
    const dir = await applied();
    const refused = vfleet(['destroy'], dir);
    assert.equal(refused.code, 1);
    assert.match(refused.stdout, PLANNED_DESTROY);
    assert.match(refused.stderr, /not destroying without confirmation; run with --auto-approve/);
    assert.doesNotMatch(refused.stderr, /\n\s+at /, 'no stack trace');
    assert.equal((await recorded()).length, 26);
    assert.equal((await onHosts()).length, 26);
  });

  it('plan --destroy shows the same plan; its saved form is applied once, then stale', async () => {
    const dir = await applied();
    const plan = vfleet(['plan', '--destroy', '--out', 'plan.json', '--detailed-exitcode'], dir);
    assert.equal(plan.code, 2, plan.stderr);
    assert.match(plan.stdout, /^ {2}- destroy db-0 on \S+: destroy requested$/m);
    assert.match(plan.stdout, PLANNED_DESTROY);
    assert.match(plan.stdout, /vfleet apply plan\.json/);
    assert.equal((await recorded()).length, 26, 'plan changes nothing');
    const apply = vfleet(['apply', 'plan.json'], dir);
    assert.equal(apply.code, 0, apply.stderr);
    assert.match(apply.stdout, /Destroy complete: 26 actions done\./);
    assert.deepEqual(await recorded(), []);
    assert.deepEqual(await onHosts(), []);
    const stale = vfleet(['apply', 'plan.json'], dir);
    assert.equal(stale.code, 1);
    assert.match(stale.stderr, /the saved plan is stale: the fleet's state moved from version/);
    const usage = vfleet(['plan', '--destroy', '--explain', 'web-0'], dir);
    assert.equal(usage.code, 1);
    assert.doesNotMatch(usage.stderr, /\n\s+at /, 'no stack trace');
  });

  it('a host that does not answer fails its destroys; after recovery the next destroy finishes', async () => {
    const dir = await applied();
    // A host that runs something (which one is the scheduler's choice).
    const instancesOn = async (host: string) =>
      (await server.client().hkeys(engineHostKeys('lab', host).instances)).sort();
    let failedHost = '';
    let there: string[] = [];
    for (const host of HOSTS) {
      there = await instancesOn(host);
      failedHost = host;
      if (there.length > 0) break;
    }
    assert.ok(there.length > 0);
    assert.equal(vfleet(['host', 'fail', failedHost], dir).code, 0);
    const failed = vfleet(['destroy', '--auto-approve'], dir);
    assert.equal(failed.code, 1);
    assert.match(
      failed.stderr,
      new RegExp(`! ${there[0]}\\.destroy: failed: .*host ${failedHost} does not answer`),
    );
    assert.match(
      failed.stdout,
      /Destroy incomplete: \d+ done, \d+ failed or skipped\. The next destroy resumes/,
    );
    assert.doesNotMatch(failed.stderr, /\n\s+at /, 'no stack trace');
    assert.deepEqual(await recorded(), there, 'only the failed host keeps its instances');
    assert.deepEqual(await onHosts(), there);
    assert.equal(vfleet(['host', 'recover', failedHost], dir).code, 0);
    const resumed = vfleet(['destroy', '--auto-approve'], dir);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(
      resumed.stdout,
      new RegExp(
        `Plan: 0 to create, 0 to move, 0 to update, 0 to patch, ${there.length} to destroy\\.`,
      ),
    );
    assert.deepEqual(await recorded(), []);
    assert.deepEqual(await onHosts(), []);
  });
});
