// Rolling patches, windows and the patch audit's states through the real CLI (bin/vfleet.js)
// against a test redis-server (REDIS_URL), on embedded hosts: `plan` shows the batches and the
// deferral, `apply` runs what its window allows and leaves the rest, a failed patch stops its
// group's rollout (the rest of the fleet goes on), `events` shows never more than maxUnavailable
// of a group out of service, and `audit patches --format csv` says pending-reboot, failed and
// security. VFLEET_NOW is the windows' clock: nothing here waits for real time.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, describe, it } from 'node:test';
import { parse } from 'csv-parse/sync';
import { EmbeddedEngine } from '../../src/engines/embedded/embedded-engine.js';
import { normalizeFleet } from '../../src/spec/normalize.js';
import { aFleetDocument, aGroup, aHost, anImage, toYaml } from '../helpers/spec-builders.js';
import { useApplyRedis, vfleet } from '../helpers/vfleet-cli.js';

const OLD = { openssl: '3.0.13-1~deb12u1', bash: '5.2.15-2' };
const doc = aFleetDocument({
  hosts: [aHost({ name: 'hv-01' }), aHost({ name: 'hv-02', labels: { rack: 'r2' } })],
  images: [anImage({ packages: OLD })],
  licenses: [],
  patchBaselines: [
    {
      name: 'sec',
      appliesTo: { family: 'debian', release: '12' },
      minimum: {
        openssl: { version: '3.0.15-1~deb12u1', security: true, reboot: true },
        bash: '5.2.15-2+b1',
      },
    },
  ],
  instances: [
    aGroup({
      name: 'web',
      replicas: 6,
      resources: { vcpus: 1, memoryMiB: 256 },
      patchBaseline: 'sec',
      patch: { maxUnavailable: 2 },
      patchWindow: { cron: '0 2 * * *', duration: '1h' },
    }),
    aGroup({
      name: 'db',
      replicas: 2,
      resources: { vcpus: 1, memoryMiB: 256 },
      patchBaseline: 'sec',
    }),
  ],
});

describe('vfleet plan/apply/audit: rolling patches in windows', () => {
  const f = useApplyRedis();
  const dirs: string[] = [];
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('defers outside the window, rolls in batches inside it, stops a group at a failure, and the audit says so', async () => {
    await f.server.client().flushall();
    const dir = mkdtempSync(`${tmpdir()}/vfleet-rollout-`);
    dirs.push(dir);
    writeFileSync(`${dir}/fleet.yaml`, toYaml(doc));
    const at = (iso: string) => ({ ...f.env, VFLEET_NOW: iso });
    const night = at('2024-06-01T01:00:00Z');

    // plan at 01:00: web's six patches wait for 02:00, db's two (no window) do not.
    const plan = vfleet(['plan'], dir, night);
    assert.equal(plan.code, 0, plan.stderr);
    assert.match(
      plan.stdout,
      /\^ patch web-0 on hv-0\d: bash 5\.2\.15-2 → 5\.2\.15-2\+b1, openssl 3\.0\.13-1~deb12u1 → 3\.0\.15-1~deb12u1 \(baseline sec\) \[batch 1\/3, deferred until 2024-06-01T02:00:00\.000Z\]/,
    );
    assert.match(plan.stdout, /\^ patch db-1 on hv-0\d: .* \[batch 2\/2\]\n/);
    assert.match(
      plan.stdout,
      /web: 6 patches in 3 batches of at most 2, stop at the first failure; deferred until 2024-06-01T02:00:00\.000Z \(window 0 2 \* \* \* for 1h \(UTC\)\)/,
    );
    assert.match(
      plan.stdout,
      /Plan: 8 to create, 0 to move, 0 to update, 8 to patch \(6 deferred\), 0 to destroy\./,
    );

    // apply at 01:00: everything but web's patches.
    const first = vfleet(['apply', '--auto-approve'], dir, night);
    assert.equal(first.code, 0, first.stdout + first.stderr);
    assert.match(
      first.stdout,
      /Apply complete: 10 actions done; 6 patches deferred until 2024-06-01T02:00:00\.000Z \(outside their patch window/,
    );
    const actions = first.stdout
      .split('\n')
      .filter((l) => l.startsWith('{') && l.includes('"type":"action"'))
      .map((l) => JSON.parse(l) as { action: string; outcome: string; until?: string });
    assert.deepEqual(
      actions.filter((a) => a.outcome === 'deferred').map((a) => [a.action, a.until]),
      [0, 1, 2, 3, 4, 5].map((i) => [`web-${i}.patch`, '2024-06-01T02:00:00.000Z']),
    );

    // The audit: db patched, its openssl waits for a reboot (security); web still outdated.
    const csv = (env: NodeJS.ProcessEnv) => {
      const r = vfleet(['audit', 'patches', '--format', 'csv'], dir, env);
      return {
        code: r.code,
        rows: parse(r.stdout, { columns: true }) as Array<Record<string, string>>,
      };
    };
    const before = csv(f.env);
    assert.equal(before.code, 2);
    const row = (rows: Array<Record<string, string>>, subject: string, pkg: string) =>
      rows.find((r) => r.subject === subject && r.package === pkg);
    assert.deepEqual(
      { ...row(before.rows, 'db-0', 'openssl') },
      {
        subject: 'db-0',
        subject_kind: 'instance',
        host: row(before.rows, 'db-0', 'openssl')?.host,
        group: 'db',
        baseline: 'sec',
        package: 'openssl',
        installed: '3.0.15-1~deb12u1',
        required: '3.0.15-1~deb12u1',
        status: 'pending-reboot',
        classification: 'security',
      },
    );
    assert.equal(row(before.rows, 'db-0', 'bash')?.status, 'pending-reboot');
    assert.equal(row(before.rows, 'db-0', 'bash')?.classification, 'other');
    assert.equal(row(before.rows, 'web-0', 'openssl')?.status, 'outdated');

    // web-3 (batch 2) breaks on openssl, as a package whose maintainer script fails.
    const status = JSON.parse(vfleet(['status', '--json'], dir, f.env).stdout) as {
      instances: Array<{ instance: string; host: string }>;
    };
    const fleet = normalizeFleet(doc);
    const hostOf = (name: string) => status.instances.find((i) => i.instance === name)?.host;
    const web3 = fleet.hosts.find((h) => h.name === hostOf('web-3'));
    assert.ok(web3);
    await new EmbeddedEngine(f.server.client(), 'test', web3).injectPatchFault('web-3', 'openssl');

    // apply at 02:10, inside the window: batch 1 patched, batch 2 has web-3 fail (web-2 goes
    // through), batch 3 is not run; exit 1.
    const second = vfleet(['apply', '--auto-approve'], dir, at('2024-06-01T02:10:00Z'));
    assert.equal(second.code, 1, second.stdout + second.stderr);
    assert.match(
      second.stderr,
      /! web-3\.patch: failed: patch-failed: hv-0\d: web-3: openssl's post-installation script failed/,
    );
    assert.match(second.stderr, /! web-4\.patch: skipped: rollout stopped after web-3 failed/);
    assert.match(second.stderr, /! web-5\.patch: skipped: rollout stopped after web-3 failed/);
    assert.match(
      second.stderr,
      /! rollout of group web stopped after web-3 failed: 2 patches of the group not run; the rest of the fleet went on\./,
    );
    assert.match(second.stdout, /Apply incomplete: 3 done, 3 failed or skipped\./);

    // The event history: never more than two replicas of web out of service at once, and two
    // at once in each batch; batch n+1 only after batch n ended.
    const events = vfleet(['events', '--json', '--last', '500'], dir, f.env)
      .stdout.split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    let out = 0;
    let most = 0;
    const batchOf = new Map<string, number>();
    const ends: Array<[number, string]> = [];
    const starts: Array<[number, string]> = [];
    events.forEach((e, i) => {
      if (!String(e.instance).startsWith('web-')) return;
      if (e.type === 'patch-started') {
        out++;
        most = Math.max(most, out);
        batchOf.set(String(e.instance), Number(e.batch));
        starts.push([i, String(e.instance)]);
      } else if (e.type === undefined && e.step === 'patch') {
        out--;
        ends.push([i, String(e.instance)]);
      }
    });
    assert.equal(
      most,
      2,
      'at most maxUnavailable (2) of web out of service, and that many at once',
    );
    assert.deepEqual([...batchOf].sort(), [
      ['web-0', 1],
      ['web-1', 1],
      ['web-2', 2],
      ['web-3', 2],
    ]);
    for (const [si, s] of starts) {
      for (const [ei, e] of ends) {
        if ((batchOf.get(e) ?? 0) < (batchOf.get(s) ?? 0))
          assert.ok(ei < si, `${s} started before ${e} ended`);
      }
    }
    assert.ok(
      events.some((e) => e.type === 'patched' && e.instance === 'web-0' && e.rebootRequired === 1),
    );

    // The audit: web-3's openssl failed (left not installed), web-4 and web-5 still outdated.
    const afterwards = csv(f.env);
    assert.equal(afterwards.code, 2);
    assert.equal(row(afterwards.rows, 'web-3', 'openssl')?.status, 'failed');
    assert.equal(row(afterwards.rows, 'web-3', 'openssl')?.installed, '');
    assert.equal(row(afterwards.rows, 'web-3', 'openssl')?.classification, 'security');
    assert.equal(row(afterwards.rows, 'web-5', 'openssl')?.status, 'outdated');
    assert.equal(row(afterwards.rows, 'web-2', 'openssl')?.status, 'pending-reboot');
    const text = vfleet(['audit', 'patches'], dir, f.env).stdout;
    assert.match(
      text,
      /Patches: 0 of 8 subjects compliant, 2 below their baseline, 5 pending a reboot, 1 whose last patch failed, 0 not applicable\./,
    );
  });
});
