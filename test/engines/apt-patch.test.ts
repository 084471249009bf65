// RealEngine.patch on this machine (local transport): sandboxes of the Debian 12 rootfs
// (scripts/build-apt-test-images.sh) patched with their own apt-get from the demo repository,
// served over HTTP on loopback. Checked from outside: dpkg's database in the rootfs, the files
// the packages installed, what the server was asked for, the processes left.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import type { InstanceRequest } from '../../src/engines/host-engine.js';
import { RealEngine } from '../../src/engines/real/real-engine.js';
import { isVfleetError } from '../../src/model/errors.js';
import { LocalTransport } from '../../src/transport/local-transport.js';
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
import { engineTestImages } from '../helpers/engine-test-images.js';
import { cleanUp, processesUsing, realHost, vmRequest } from '../helpers/real-hosts.js';

const suffix = process.pid.toString(36);
const OS = { family: 'debian', release: '12', arch: 'x86_64' } as const;

describe('RealEngine.patch: apt-get in a sandbox of the Debian rootfs', () => {
  let images: AptTestImages;
  let repo: AptRepoServer;
  let dir: string;
  let dataDir: string;
  let rootfsTar: string;
  let engine: RealEngine;
  const host = `apt-${suffix}`;

  const request = (name: string, generation: number): InstanceRequest => ({
    name,
    group: name.replace(/-\d+$/, ''),
    generation,
    image: {
      name: 'debian-apt',
      kind: 'container',
      os: OS,
      packages: {},
      source: { rootfs: rootfsTar },
      command: DEBIAN_SANDBOX_COMMAND,
    },
    resources: { vcpus: 1, memoryMiB: 128, diskGiB: 1 },
  });
  const rootfs = (name: string) => `${dataDir}/instances/${name}/rootfs`;

  before(async () => {
    images = await aptTestImages();
    repo = await serveAptRepo(images.repo);
    dir = mkdtempSync(`${tmpdir()}/vfleet-apt-`);
    dataDir = `${dir}/data`;
    rootfsTar = await rootfsWithSource(images, repo.url, dir);
    engine = new RealEngine(realHost(host, dataDir), new LocalTransport(host), {
      sandbox: { stopTimeoutMs: 2_000 },
      qemu: { accel: 'tcg', stopTimeoutMs: 2_000 },
    });
  });
  after(async () => {
    const left = await cleanUp(dataDir, host);
    await repo?.stop();
    rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(left.pids, [], 'no process outlives the suite');
  });

  it('installs exactly the version asked for, with its new dependency, and records what dpkg says', async () => {
    const created = await engine.create(request('tls-0', 1));
    assert.equal(created.status, 'running');
    assert.equal(created.packages['vfleet-demo-tls'], '1.0-1', 'the inventory is dpkg\u2019s');
    const sandboxPid = created.runtime?.pid;
    repo.requests.length = 0;

    const patched = await engine.patch('tls-0', 2, { 'vfleet-demo-tls': '1.0-2' });

    assert.deepEqual(await dpkgVersions(rootfs('tls-0'), ['vfleet-demo-tls', 'vfleet-demo-lib']), {
      'vfleet-demo-tls': '1.0-2',
      'vfleet-demo-lib': '1.0-1',
    });
    assert.equal(
      readFileSync(`${rootfs('tls-0')}/usr/share/vfleet-demo/vfleet-demo-tls.version`, 'utf8'),
      '1.0-2\n',
    );
    // Never more than asked: 1.0-3 is in the repository, and was not even downloaded.
    assert.ok(repo.requests.includes('/vfleet-demo-tls_1.0-2_all.deb'), repo.requests.join(' '));
    assert.ok(!repo.requests.some((r) => r.includes('1.0-3')), repo.requests.join(' '));
    assert.equal(patched.generation, 2);
    assert.equal(patched.packages['vfleet-demo-tls'], '1.0-2');
    assert.equal(patched.packages['vfleet-demo-lib'], '1.0-1');
    assert.deepEqual(patched.lastPatch, {
      generation: 2,
      outcome: 'patched',
      changed: [
        { package: 'vfleet-demo-lib', from: null, to: '1.0-1' },
        { package: 'vfleet-demo-tls', from: '1.0-1', to: '1.0-2' },
      ],
      rebootRequired: true,
    });
    // The admin's change to the conffile is kept; the package's new version is set beside it.
    const conf = readFileSync(`${rootfs('tls-0')}/etc/vfleet-demo/vfleet-demo-tls.conf`, 'utf8');
    assert.match(conf, /# a local change, as an operator would make/);
    assert.ok(existsSync(`${rootfs('tls-0')}/etc/vfleet-demo/vfleet-demo-tls.conf.dpkg-dist`));
    // While the postinst ran, policy-rc.d denied service starts (101); it is gone after.
    assert.equal(
      readFileSync(`${rootfs('tls-0')}/var/lib/vfleet-demo/policy-rc.d`, 'utf8'),
      '101\n',
    );
    assert.equal(existsSync(`${rootfs('tls-0')}/usr/sbin/policy-rc.d`), false);
    // Nothing of the patch is left running or mounted; the sandbox runs on, the same process.
    assert.deepEqual(processesUsing(rootfs('tls-0')), sandboxPid ? [sandboxPid] : []);
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8');
    assert.ok(!mounts.includes(rootfs('tls-0')), 'no mount left in the rootfs');
    assert.equal(patched.status, 'running');
    // What the host reports from now on, and its inventory, is dpkg's.
    assert.deepEqual((await engine.describe('tls-0'))?.lastPatch, patched.lastPatch);
    assert.equal((await engine.inventory('tls-0'))['vfleet-demo-tls'], '1.0-2');

    // Asked again (a job run twice): nothing to install, nothing fetched.
    repo.requests.length = 0;
    const again = await engine.patch('tls-0', 2, { 'vfleet-demo-tls': '1.0-2' });
    assert.equal(again.lastPatch?.outcome, 'unchanged');
    assert.deepEqual(again.lastPatch?.changed, []);
    assert.deepEqual(repo.requests, []);
    // An older generation is refused (fencing), before anything runs.
    await assert.rejects(
      engine.patch('tls-0', 1, { 'vfleet-demo-tls': '1.0-3' }),
      (e) => isVfleetError(e) && e.code === 'stale-generation',
    );
    await engine.destroy('tls-0', 3);
  });

  it("reports a failed postinst with dpkg's own message, and records the instance as dpkg left it", async (t) => {
    await engine.create(request('broken-0', 1));
    await assert.rejects(engine.patch('broken-0', 2, { 'vfleet-demo-broken': '1.0-2' }), (e) => {
      assert.ok(isVfleetError(e), String(e));
      assert.equal(e.code, 'patch-failed');
      assert.equal(e.retryable, false);
      assert.match(e.message, new RegExp(`^${host}: broken-0: apt-get install exited with 100: `));
      assert.match(e.message, /vfleet-demo-broken: this postinst fails on purpose/);
      assert.match(e.message, /post-installation script subprocess returned error exit status 1/);
      assert.equal(e.message.includes('\n'), false, 'one line');
      t.diagnostic(e.message);
      return true;
    });
    assert.equal(await dpkgStatus(rootfs('broken-0'), 'vfleet-demo-broken'), 'half-configured');
    const after = await engine.describe('broken-0');
    assert.equal(after?.lastPatch?.outcome, 'failed');
    assert.equal(after?.lastPatch?.generation, 2);
    assert.match(after?.lastPatch?.error ?? '', /^patch-failed: .*fails on purpose/);
    // Not configured is not installed: the inventory no longer counts it.
    assert.equal(after?.packages['vfleet-demo-broken'], undefined);
    assert.deepEqual(after?.lastPatch?.changed, [
      { package: 'vfleet-demo-broken', from: '1.0-1', to: null },
    ]);
    assert.equal(after?.status, 'running');
    assert.equal(existsSync(`${rootfs('broken-0')}/usr/sbin/policy-rc.d`), false);
    await engine.destroy('broken-0', 3);
  });

  it('refuses what apt cannot do, and names and versions that are not Debian\u2019s, before anything is installed', async () => {
    await engine.create(request('refuse-0', 1));
    const before = await dpkgVersions(rootfs('refuse-0'), ['vfleet-demo-tls']);
    await assert.rejects(
      engine.patch('refuse-0', 2, { 'vfleet-demo-tls': '9.9-9' }),
      (e) =>
        isVfleetError(e) &&
        e.code === 'patch-failed' &&
        /apt-get -s install exited with 100: .*Version '9\.9-9' for 'vfleet-demo-tls' was not found/.test(
          e.message,
        ),
    );
    for (const [name, version] of [
      ['-oAPT::Get::Assume-Yes=1', '1.0-2'],
      ['vfleet-demo-tls', '1.0-2 vfleet-demo-broken=1.0-2'],
      ['vfleet-demo-tls', '$(touch /tmp/x)'],
      ['?installed', '1.0-2'],
      ['vfleet-demo-tls', '1.0-2-'],
    ] as const) {
      await assert.rejects(
        engine.patch('refuse-0', 3, { [name]: version }),
        (e) => isVfleetError(e) && e.code === 'invalid-request',
        `${name}=${version}`,
      );
    }
    assert.deepEqual(await dpkgVersions(rootfs('refuse-0'), ['vfleet-demo-tls']), before);
    await engine.destroy('refuse-0', 4);
  });

  it('finishes what an interrupted dpkg left (a patch killed at its time limit), then patches', async () => {
    await engine.create(request('resume-0', 1));
    // What dpkg leaves when it is killed between unpacking and configuring: a journal entry in
    // updates/, which apt refuses to go on from until `dpkg --configure -a` has run.
    writeFileSync(
      `${rootfs('resume-0')}/var/lib/dpkg/updates/0001`,
      'Package: vfleet-demo-tls\nStatus: install ok unpacked\nVersion: 1.0-1\nArchitecture: all\nMaintainer: vfleet tests <vfleet@example.invalid>\nDescription: x\n',
    );
    assert.equal(await dpkgStatus(rootfs('resume-0'), 'vfleet-demo-tls'), 'unpacked');
    const patched = await engine.patch('resume-0', 2, { 'vfleet-demo-tls': '1.0-2' });
    assert.equal(patched.lastPatch?.outcome, 'patched');
    assert.deepEqual(await dpkgVersions(rootfs('resume-0'), ['vfleet-demo-tls']), {
      'vfleet-demo-tls': '1.0-2',
    });
    await engine.destroy('resume-0', 3);
  });

  it('fails retryably when the mirror does not answer, and installs nothing', async () => {
    await engine.create(request('offline-0', 1));
    const gone = await serveAptRepo(images.repo);
    const url = gone.url;
    await gone.stop();
    // The instance's sources name a server that is no longer there.
    const list = `${rootfs('offline-0')}/etc/apt/sources.list.d/vfleet-demo.list`;
    writeFileSync(list, `deb [trusted=yes] ${url} ./\n`);
    await assert.rejects(
      engine.patch('offline-0', 2, { 'vfleet-demo-tls': '1.0-2' }),
      (e) =>
        isVfleetError(e) &&
        e.code === 'apt-update-failed' &&
        e.retryable &&
        /apt-get update exited with 100: .*127\.0\.0\.1/.test(e.message),
    );
    assert.deepEqual(await dpkgVersions(rootfs('offline-0'), ['vfleet-demo-tls']), {
      'vfleet-demo-tls': '1.0-1',
    });
    await engine.destroy('offline-0', 3);
  });

  it('refuses to patch a VM whose image gives no way into its guest, naming it', async () => {
    const vmImages = await engineTestImages();
    await engine.create(vmRequest(vmImages, 'vm-0', 1));
    await assert.rejects(
      engine.patch('vm-0', 2, { 'vfleet-demo-tls': '1.0-2' }),
      (e) =>
        isVfleetError(e) &&
        e.code === 'patch-not-supported' &&
        !e.retryable &&
        e.message.includes(host) &&
        e.message.includes('vm-0') &&
        /gives no guest access/.test(e.message),
    );
    await engine.destroy('vm-0', 3);
  });
});
