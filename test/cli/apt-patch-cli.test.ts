// `vfleet plan` and `vfleet apply` patching real sandboxes with APT, end to end: the CLI with a
// test Redis, a local host and an ssh host (a real sshd on 127.0.0.70), sandboxes of the Debian 12
// rootfs (scripts/build-apt-test-images.sh) whose apt sources name the demo repository served
// over HTTP on loopback. The steps build on each other:
//
//   1. apply without baselines: three sandboxes, vfleet-demo-tls and -broken at 1.0-1 (dpkg's word)
//   2. baselines asking for 1.0-2: plan shows the three patches and why
//   3. apply: dpkg in both tls rootfs reports 1.0-2 (never the repository's 1.0-3), the audit has
//      them at their baseline, pending a reboot (their lastPatch says so); the broken package's
//      postinst fails and its instance's job fails with dpkg's message, recorded as dpkg left
//      it (the audit: failed), while the rest goes on
//   4. plan again: only the broken one; scaled to zero, nothing left running
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import type { FleetDocument } from '../../src/model/fleet-spec.generated.js';
import {
  type AptRepoServer,
  type AptTestImages,
  aptTestImages,
  DEBIAN_SANDBOX_COMMAND,
  dpkgStatus,
  dpkgVersions,
  rootfsWithSource,
  serveAptRepo,
} from '../helpers/apt-test-images.js';
import { fromRoot } from '../helpers/paths.js';
import { cleanUp, processesUsing } from '../helpers/real-hosts.js';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';
import { aGroup, aHost, anImage, toYaml } from '../helpers/spec-builders.js';
import { startSshd, type TestSshd } from '../helpers/sshd.js';
import { runVfleet, type VfleetRun } from '../helpers/vfleet-cli.js';

const _bin = fromRoot('bin', 'vfleet.js');
const suffix = process.pid.toString(36);
const OS = { family: 'debian', release: '12', arch: 'x86_64' } as const;

describe('vfleet apply patches sandboxes with apt (a local and an ssh host)', () => {
  let images: AptTestImages;
  let repo: AptRepoServer;
  let server: TestRedisServer;
  let sshd: TestSshd;
  let dir: string;
  let rootfsTar: string;
  const local = { name: `apt-l-${suffix}`, dataDir: '' };
  const remote = { name: `apt-s-${suffix}`, dataDir: '' };

  before(async () => {
    images = await aptTestImages();
    repo = await serveAptRepo(images.repo);
    server = await startRedisServer({ args: ['--maxmemory-policy', 'noeviction'], tcp: true });
    sshd = await startSshd({ address: '127.0.0.70' });
    dir = mkdtempSync(`${tmpdir()}/vfleet-apt-cli-`);
    local.dataDir = `${dir}/local-data`;
    remote.dataDir = `${sshd.dir}/data`;
    rootfsTar = await rootfsWithSource(images, repo.url, dir);
  });

  after(async () => {
    const left = [
      ...(await cleanUp(local.dataDir, local.name)).pids,
      ...(await cleanUp(remote.dataDir, remote.name)).pids,
    ];
    await sshd?.stop();
    await server?.stop();
    await repo?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(left, [], 'no process outlives the suite');
  });

  function spec(shape: { replicas: number; baselines: boolean }): string {
    const common = {
      cpu: { sockets: 1, coresPerSocket: 2, threadsPerCore: 1 },
      memoryMiB: 4096,
      diskGiB: 20,
      os: OS,
      runs: ['container'] as ['container'],
    };
    const document: FleetDocument = {
      apiVersion: 'vfleet/v1',
      kind: 'Fleet',
      metadata: { name: `apt-${suffix}` },
      spec: {
        failover: { tolerate: 0 },
        hosts: [
          aHost({
            ...common,
            name: local.name,
            engine: 'local',
            dataDir: local.dataDir,
            labels: { site: 'l' },
          }),
          aHost({
            ...common,
            name: remote.name,
            engine: 'ssh',
            address: sshd.address,
            port: sshd.port,
            user: 'root',
            hostKey: sshd.hostKey,
            identityFile: sshd.clientKeyPath,
            dataDir: remote.dataDir,
            labels: { site: 's' },
          }),
        ],
        images: [
          anImage({
            name: 'debian-apt',
            kind: 'container',
            os: OS,
            source: { rootfs: rootfsTar },
            command: DEBIAN_SANDBOX_COMMAND,
            // What the image is said to have; the hosts report what dpkg has.
            packages: { 'vfleet-demo-tls': '1.0-1', 'vfleet-demo-broken': '1.0-1' },
          }),
        ],
        ...(shape.baselines
          ? {
              patchBaselines: [
                {
                  name: 'demo-tls',
                  appliesTo: { family: 'debian', release: '12' },
                  minimum: { 'vfleet-demo-tls': '1.0-2' },
                },
                {
                  name: 'demo-broken',
                  appliesTo: { family: 'debian', release: '12' },
                  minimum: { 'vfleet-demo-broken': '1.0-2' },
                },
              ],
            }
          : {}),
        instances: [
          aGroup({
            name: 'tls',
            image: 'debian-apt',
            replicas: 2 * shape.replicas,
            resources: { vcpus: 1, memoryMiB: 128, diskGiB: 1 },
            placement: { spread: 'site' },
            ...(shape.baselines ? { patchBaseline: 'demo-tls' } : {}),
          }),
          aGroup({
            name: 'broken',
            image: 'debian-apt',
            replicas: shape.replicas,
            resources: { vcpus: 1, memoryMiB: 128, diskGiB: 1 },
            placement: { requireLabels: { site: 'l' } },
            ...(shape.baselines ? { patchBaseline: 'demo-broken' } : {}),
          }),
        ],
      },
    };
    return toYaml(document);
  }

  function vfleet(args: string[]): Promise<VfleetRun> {
    const env = {
      REDIS_URL: `${server.url}/0`,
      // The test images live outside the spec's folder: allowed, as a user would (README).
      VFLEET_ALLOW_PATHS: `${images.dir}:${dir}`,
      VFLEET_SANDBOX_STOP_TIMEOUT_MS: '3000',
    };
    return runVfleet(args, dir, env, 300_000);
  }

  const hostOf = new Map<string, { name: string; dataDir: string }>();
  const rootfs = (instance: string) => {
    const h = hostOf.get(instance);
    assert.ok(h, `${instance} was placed`);
    return `${h.dataDir}/instances/${instance}/rootfs`;
  };

  it('1. creates the sandboxes; the state has what dpkg reports', async () => {
    writeFileSync(`${dir}/fleet.yaml`, spec({ replicas: 1, baselines: false }));
    const first = await vfleet(['apply', '--auto-approve']);
    assert.equal(first.code, 0, first.stderr + first.stdout);
    assert.match(
      first.stdout,
      /Plan: 3 to create, 0 to move, 0 to update, 0 to patch, 0 to destroy/,
    );
    const status = JSON.parse((await vfleet(['status', '--json'])).stdout) as {
      instances: Array<{
        instance: string;
        host: string;
        status: string;
        packages: Record<string, string>;
      }>;
    };
    for (const i of status.instances) {
      hostOf.set(i.instance, i.host === local.name ? local : remote);
      assert.equal(i.status, 'running', i.instance);
      // dpkg's inventory, not the two packages the spec says the image has
      assert.equal(i.packages['vfleet-demo-tls'], '1.0-1', i.instance);
      assert.ok(i.packages.dpkg && i.packages.apt && i.packages['base-files'], i.instance);
    }
    assert.deepEqual([...hostOf.keys()].sort(), ['broken-0', 'tls-0', 'tls-1']);
    assert.notEqual(hostOf.get('tls-0'), hostOf.get('tls-1'), 'one tls sandbox per host');
    for (const name of hostOf.keys()) {
      assert.deepEqual(
        await dpkgVersions(rootfs(name), ['vfleet-demo-tls', 'vfleet-demo-broken']),
        { 'vfleet-demo-tls': '1.0-1', 'vfleet-demo-broken': '1.0-1' },
        name,
      );
    }
  });

  it('2. plan shows the patches the baselines ask for', async () => {
    writeFileSync(`${dir}/fleet.yaml`, spec({ replicas: 1, baselines: true }));
    const plan = await vfleet(['plan']);
    assert.equal(plan.code, 0, plan.stderr);
    assert.match(
      plan.stdout,
      /Plan: 0 to create, 0 to move, 0 to update, 3 to patch, 0 to destroy/,
    );
    for (const name of ['tls-0', 'tls-1']) {
      assert.match(
        plan.stdout,
        new RegExp(
          `patch ${name} on ${hostOf.get(name)?.name}: vfleet-demo-tls 1\\.0-1 → 1\\.0-2 \\(baseline demo-tls\\)`,
        ),
      );
    }
    assert.match(
      plan.stdout,
      /patch broken-0 on .*: vfleet-demo-broken 1\.0-1 → 1\.0-2 \(baseline demo-broken\)/,
    );
  });

  it("3. apply installs 1.0-2 where it can; the failed postinst is reported in dpkg's words", async (t) => {
    repo.requests.length = 0;
    const applied = await vfleet(['apply', '--auto-approve']);
    t.diagnostic(applied.stdout.trim().split('\n').slice(-8).join('\n'));
    assert.notEqual(applied.code, 0, 'one action failed');
    assert.match(applied.stdout + applied.stderr, /broken-0/);
    assert.match(applied.stdout + applied.stderr, /this postinst fails on purpose/);

    // dpkg in each root: exactly the baseline's version, with the dependency it brought.
    for (const name of ['tls-0', 'tls-1']) {
      assert.deepEqual(
        await dpkgVersions(rootfs(name), ['vfleet-demo-tls', 'vfleet-demo-lib']),
        { 'vfleet-demo-tls': '1.0-2', 'vfleet-demo-lib': '1.0-1' },
        name,
      );
    }
    assert.ok(!repo.requests.some((r) => r.includes('1.0-3')), repo.requests.join(' '));
    assert.equal(await dpkgStatus(rootfs('broken-0'), 'vfleet-demo-broken'), 'half-configured');

    // The observed audit is what dpkg says, and what each last patch reported: tls at its
    // baseline (with the new dependency recorded) but pending a reboot (1.0-2 touches
    // /var/run/reboot-required), broken-0 failed (its package is not configured, so not
    // installed, after a patch that was to raise it).
    const audit = await vfleet(['audit', 'patches', '--format', 'json']);
    assert.equal(audit.code, 2, audit.stderr);
    const report = JSON.parse(audit.stdout) as {
      patches: { subjects: Array<{ subject: string; status: string; error?: string }> };
      findings: Array<{
        subject: string;
        package: string;
        installed: string | null;
        status: string;
      }>;
    };
    const bySubject = Object.fromEntries(report.patches.subjects.map((s) => [s.subject, s.status]));
    assert.equal(bySubject['tls-0'], 'pending-reboot');
    assert.equal(bySubject['tls-1'], 'pending-reboot');
    assert.equal(bySubject['broken-0'], 'failed');
    assert.match(
      report.patches.subjects.find((s) => s.subject === 'broken-0')?.error ?? '',
      /post-installation script subprocess returned error exit status 1/,
    );
    assert.deepEqual(
      report.findings.map((f) => [f.subject, f.package, f.installed, f.status]),
      [
        ['broken-0', 'vfleet-demo-broken', null, 'failed'],
        ['tls-0', 'vfleet-demo-tls', '1.0-2', 'pending-reboot'],
        ['tls-1', 'vfleet-demo-tls', '1.0-2', 'pending-reboot'],
      ],
    );
    const state = JSON.parse((await vfleet(['status', '--json'])).stdout) as {
      instances: Array<{ instance: string; status: string; packages: Record<string, string> }>;
    };
    for (const i of state.instances) {
      assert.equal(i.status, 'running', i.instance);
      if (i.instance.startsWith('tls-')) {
        assert.equal(i.packages['vfleet-demo-tls'], '1.0-2', i.instance);
        assert.equal(i.packages['vfleet-demo-lib'], '1.0-1', i.instance);
      } else {
        assert.equal(i.packages['vfleet-demo-broken'], undefined, i.instance);
        assert.equal(i.packages['vfleet-demo-tls'], '1.0-1', i.instance);
      }
    }

    // The history: a `patched` event per tls sandbox (what changed, a reboot asked for), and
    // broken-0's job failed with the host's one line.
    const events = (await vfleet(['events', '--json', '--last', '200'])).stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    for (const name of ['tls-0', 'tls-1']) {
      const patched = events.find((e) => e.type === 'patched' && e.instance === name);
      assert.ok(patched, `${name}: ${JSON.stringify(events.slice(-6))}`);
      assert.equal(patched.changed, 'vfleet-demo-lib none → 1.0-1, vfleet-demo-tls 1.0-1 → 1.0-2');
      assert.equal(patched.rebootRequired, 1);
      assert.equal(patched.host, hostOf.get(name)?.name);
    }
    // As people read it.
    const text = (await vfleet(['events', '--last', '200'])).stdout;
    assert.match(
      text,
      new RegExp(
        ` patched ${hostOf.get('tls-1')?.name} tls-1 at generation \\d+: vfleet-demo-lib none → 1\\.0-1, vfleet-demo-tls 1\\.0-1 → 1\\.0-2 \\(reboot required\\)`,
      ),
    );
    const failed = events.find((e) => e.instance === 'broken-0' && e.outcome === 'failed');
    assert.ok(failed, JSON.stringify(events.slice(-6)));
    assert.match(
      String(failed.error),
      new RegExp(
        `^patch-failed: ${local.name}: broken-0: apt-get install exited with 100: .*this postinst fails on purpose.*post-installation script subprocess returned error exit status 1`,
      ),
    );
  });

  it('4. plans the broken patch again, nothing else; scaled to zero, nothing is left', async () => {
    const plan = await vfleet(['plan']);
    assert.equal(plan.code, 0, plan.stderr);
    assert.match(
      plan.stdout,
      /Plan: 0 to create, 0 to move, 0 to update, 1 to patch, 0 to destroy/,
    );
    assert.match(plan.stdout, /patch broken-0 on /);

    writeFileSync(`${dir}/fleet.yaml`, spec({ replicas: 0, baselines: true }));
    const down = await vfleet(['apply', '--auto-approve']);
    assert.equal(down.code, 0, down.stderr + down.stdout);
    assert.match(down.stdout, /3 to destroy/);
    assert.deepEqual(processesUsing(local.dataDir), []);
    assert.deepEqual(processesUsing(remote.dataDir), []);
  });
});
