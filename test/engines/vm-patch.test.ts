// RealEngine.patch of a VM on this machine (local transport, QEMU under TCG): the Debian 12 guest
// of scripts/build-apt-vm-image.sh, booted once for the whole file (a boot costs tens of seconds
// under TCG), patched with its own apt-get over ssh from the demo repository, which its QEMU
// forwards to it (guestfwd to 127.0.0.1 only). Checked from outside, with OpenSSH's own client
// into the guest: dpkg's database there, what the repository was asked for, the snapshots in
// the disk, QEMU's process.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { forwardedPort, reachGuest } from '../../src/engines/real/qemu-guest.js';
import { qmp } from '../../src/engines/real/qmp-client.js';
import { RealEngine } from '../../src/engines/real/real-engine.js';
import { isVfleetError } from '../../src/model/errors.js';
import { LocalTransport } from '../../src/transport/local-transport.js';
import { type AptRepoServer, serveAptRepo } from '../helpers/apt-test-images.js';
import { type AptVmImage, aptVmImage, aptVmRequest } from '../helpers/apt-vm-image.js';
import { alive, cleanUp, realHost } from '../helpers/real-hosts.js';

const run = promisify(execFile);
const suffix = process.pid.toString(36);
const NAME = 'web-0';
const SNAPSHOT = 'vfleet-pre-patch';

describe('RealEngine.patch: apt-get in a VM guest over ssh, with a snapshot to roll back to', () => {
  let image: AptVmImage;
  let repo: AptRepoServer;
  let dir: string;
  let dataDir: string;
  let engine: RealEngine;
  let qemuPid: number | undefined;
  const host = `vmp-${suffix}`;
  const transport = new LocalTransport(host);
  const instanceDir = () => `${dataDir}/instances/${NAME}`;
  const ctx = () => ({
    t: transport,
    host,
    instance: NAME,
    dir: instanceDir(),
    // Only what qemu-guest.ts reads of a driver context.
  });
  const timings: Record<string, number> = {};

  /** A command in the guest through OpenSSH's client, the guest's key pinned by a known_hosts. */
  const inGuest = async (command: string): Promise<string> => {
    const port = await forwardedPort(ctx() as never, { port: 22 } as never, 10_000);
    const { stdout } = await run(
      'ssh',
      [
        '-q',
        '-i',
        image.loginKey,
        '-o',
        'BatchMode=yes',
        '-o',
        `UserKnownHostsFile=${dir}/known_hosts`,
        '-o',
        'StrictHostKeyChecking=yes',
        '-o',
        'HostKeyAlias=vfleet-guest',
        '-o',
        'ConnectTimeout=30',
        '-p',
        String(port),
        'root@127.0.0.1',
        command,
      ],
      { timeout: 60_000 },
    );
    return stdout;
  };
  const dpkgOf = async (name: string) =>
    (await inGuest(`dpkg-query -W -f='\${db:Status-Status} \${Version}' ${name} || true`)).trim();
  const snapshots = async () =>
    String(
      await qmp(transport, `${instanceDir()}/qmp.sock`, 'human-monitor-command', {
        'command-line': 'info snapshots',
      }),
    );
  const timed = async <T>(what: string, act: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    try {
      return await act();
    } finally {
      timings[what] = Math.round(performance.now() - started);
    }
  };

  before(async () => {
    image = await aptVmImage();
    repo = await serveAptRepo(`${image.dir}/apt-demo-repo`);
    dir = mkdtempSync(`${tmpdir()}/vfleet-vmp-`);
    dataDir = `${dir}/data`;
    writeFileSync(`${dir}/known_hosts`, `vfleet-guest ${image.hostKey}\n`);
    engine = new RealEngine(realHost(host, dataDir), transport, {
      qemu: { accel: 'tcg', stopTimeoutMs: 5_000 },
    });
  });
  after(async () => {
    console.log(`vm-patch timings (ms): ${JSON.stringify(timings)}`);
    const left = await cleanUp(dataDir, host);
    await repo?.stop();
    rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(left.pids, [], 'no process outlives the suite');
  });

  it('boots the guest on a restricted user network and records the inventory its dpkg reports', async () => {
    const port = Number(new URL(repo.url).port);
    const created = await timed('boot-to-sshd', () =>
      engine.create(aptVmRequest(image, NAME, 1, port)),
    );
    assert.equal(created.status, 'running');
    qemuPid = created.runtime?.pid;
    // The image's inventory in the spec is empty: these versions are what dpkg said in the guest.
    assert.equal(created.packages['vfleet-demo-tls'], '1.0-1');
    assert.equal(created.packages['vfleet-demo-broken'], '1.0-1');
    assert.match(created.packages['openssh-server'] ?? '', /^1:9\./);
    assert.match(created.packages['linux-image-cloud-amd64'] ?? '', /^6\.1\./);
    assert.match(readFileSync(`${instanceDir()}/serial.log`, 'utf8'), /VFLEET-GUEST-READY/);
    // The guest reaches nothing but its forward, which goes to 127.0.0.1 only; its sshd is on
    // a loopback port of the host.
    const argv = readFileSync(`/proc/${qemuPid}/cmdline`, 'utf8').split('\0');
    const nic = argv[argv.indexOf('-nic') + 1] ?? '';
    assert.match(nic, /^user,model=virtio-net-pci,restrict=on,hostfwd=tcp:127\.0\.0\.1:0-:22,/);
    // One helper per guest connection, to 127.0.0.1:<port> (qemu-guest.ts, GUESTFWD_SCRIPT).
    assert.match(
      nic,
      new RegExp(
        `,guestfwd=tcp:10\\.0\\.2\\.100:80-cmd:/bin/sh \\S+/vfleet-guestfwd-[0-9a-f]{16}\\.sh ${port}$`,
      ),
    );
    // What the guest cannot reach: anything beyond the forward (restrict=on drops it).
    assert.equal(
      (
        await inGuest(
          'timeout 5 bash -c "exec 3<>/dev/tcp/10.0.2.2/22" 2>/dev/null && echo open || echo closed',
        )
      ).trim(),
      'closed',
    );
  });

  it('refuses a guest whose sshd presents another key than the pinned one, naming both', async () => {
    const other =
      'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq3r7yK1nq4x2q1m0pV0cQ3jE9w8nS8nF5t7uLk0aBc';
    const guest = {
      user: 'root',
      port: 22,
      hostKey: other,
      identityFile: image.loginKey,
      forwards: [],
    };
    await assert.rejects(
      reachGuest(ctx() as never, guest, 30_000),
      (e) =>
        isVfleetError(e) &&
        e.code === 'host-key-mismatch' &&
        e.message.includes(NAME) &&
        e.message.includes('SHA256:') &&
        !e.message.includes('PRIVATE KEY'),
    );
  });

  it('simulates first: a version the mirror lacks fails at apt-get -s, before any snapshot', async () => {
    await assert.rejects(
      engine.patch(NAME, 2, { 'vfleet-demo-tls': '9.9-9' }, { rollback: true }),
      (e) =>
        isVfleetError(e) &&
        e.code === 'patch-failed' &&
        /apt-get -s install exited with 100/.test(e.message) &&
        /Version '9\.9-9' for 'vfleet-demo-tls' was not found/.test(e.message) &&
        !/rolled back/.test(e.message),
    );
    const now = await engine.describe(NAME);
    assert.equal(now?.lastPatch?.outcome, 'failed');
    assert.equal(now?.lastPatch?.rolledBack, undefined);
    assert.doesNotMatch(await snapshots(), new RegExp(SNAPSHOT));
    assert.equal(await dpkgOf('vfleet-demo-tls'), 'installed 1.0-1');
  });

  it('rolls a failed postinst back from the snapshot: the guest as it was, dpkg included', async () => {
    const statusBefore = await inGuest('sha256sum /var/lib/dpkg/status');
    const bootBefore = await inGuest('cat /proc/sys/kernel/random/boot_id');
    await timed('patch-rolled-back', async () => {
      await assert.rejects(
        engine.patch(NAME, 3, { 'vfleet-demo-broken': '1.0-2' }, { rollback: true }),
        (e) =>
          isVfleetError(e) &&
          e.code === 'patch-failed' &&
          !e.retryable &&
          e.message.includes(NAME) &&
          /this postinst fails on purpose/.test(e.message) &&
          /rolled back to its snapshot$/.test(e.message),
      );
    });
    const now = await engine.describe(NAME);
    assert.equal(now?.status, 'running');
    assert.equal(now?.runtime?.pid, qemuPid, 'the same QEMU: loadvm, not a restart');
    assert.equal(now?.lastPatch?.outcome, 'failed');
    assert.equal(now?.lastPatch?.rolledBack, true);
    assert.deepEqual(now?.lastPatch?.changed, []);
    assert.equal(now?.packages['vfleet-demo-broken'], '1.0-1');
    // The guest itself: dpkg's database byte for byte as before, the old version's file, the
    // same boot (it resumed where the snapshot was taken), and no snapshot left in the disk.
    assert.equal(await inGuest('sha256sum /var/lib/dpkg/status'), statusBefore);
    assert.equal(await dpkgOf('vfleet-demo-broken'), 'installed 1.0-1');
    assert.equal(
      (await inGuest('cat /usr/share/vfleet-demo/vfleet-demo-broken.version')).trim(),
      '1.0-1',
    );
    assert.equal(await inGuest('cat /proc/sys/kernel/random/boot_id'), bootBefore);
    assert.doesNotMatch(await snapshots(), new RegExp(SNAPSHOT));
  });

  it('installs exactly the baseline, re-reads dpkg, and reports the reboot the update asks for', async () => {
    repo.requests.length = 0;
    const patched = await timed('patch', () =>
      engine.patch(NAME, 4, { 'vfleet-demo-tls': '1.0-2' }, { rollback: true }),
    );
    assert.deepEqual(patched.lastPatch, {
      generation: 4,
      outcome: 'patched',
      changed: [
        { package: 'vfleet-demo-lib', from: null, to: '1.0-1' },
        { package: 'vfleet-demo-tls', from: '1.0-1', to: '1.0-2' },
      ],
      rebootRequired: true,
    });
    assert.equal(patched.packages['vfleet-demo-tls'], '1.0-2');
    assert.equal(await dpkgOf('vfleet-demo-tls'), 'installed 1.0-2');
    assert.equal(await dpkgOf('vfleet-demo-lib'), 'installed 1.0-1');
    assert.equal((await inGuest('test -e /var/run/reboot-required && echo yes')).trim(), 'yes');
    // A booted guest starts its own services: no policy-rc.d was put in its way.
    assert.equal((await inGuest('cat /var/lib/vfleet-demo/policy-rc.d')).trim(), 'absent');
    // Through the forward, and never more than asked: 1.0-3 was not even downloaded.
    assert.ok(repo.requests.includes('/vfleet-demo-tls_1.0-2_all.deb'), repo.requests.join(' '));
    assert.ok(!repo.requests.some((r) => r.includes('1.0-3')), repo.requests.join(' '));
    // The admin's conffile change is kept.
    assert.match(
      await inGuest('cat /etc/vfleet-demo/vfleet-demo-tls.conf'),
      /a local change, as an operator would make/,
    );
    // The snapshot was taken and dropped.
    assert.doesNotMatch(await snapshots(), new RegExp(SNAPSHOT));
    // The inventory is read again from the guest's dpkg.
    const inventory = await engine.inventory(NAME);
    assert.equal(inventory['vfleet-demo-tls'], '1.0-2');
    assert.deepEqual(inventory, (await engine.describe(NAME))?.packages);
    // Run twice, it does nothing.
    const again = await engine.patch(NAME, 5, { 'vfleet-demo-tls': '1.0-2' }, { rollback: true });
    assert.equal(again.lastPatch?.outcome, 'unchanged');
    assert.equal(again.lastPatch?.rebootRequired, true);
  });

  it('with onFailure stop, leaves a failed postinst as dpkg left it and says so', async () => {
    await assert.rejects(
      engine.patch(NAME, 6, { 'vfleet-demo-broken': '1.0-2' }),
      (e) =>
        isVfleetError(e) &&
        e.code === 'patch-failed' &&
        /Errors were encountered while processing: \| vfleet-demo-broken/.test(e.message) &&
        !/rolled back/.test(e.message),
    );
    const now = await engine.describe(NAME);
    assert.equal(now?.lastPatch?.outcome, 'failed');
    assert.equal(now?.lastPatch?.rolledBack, undefined);
    assert.equal(now?.packages['vfleet-demo-broken'], undefined, 'half-configured: not installed');
    assert.equal(await dpkgOf('vfleet-demo-broken'), 'half-configured 1.0-2');
    assert.doesNotMatch(await snapshots(), new RegExp(SNAPSHOT));
  });

  it('destroys the VM with nothing left running', async () => {
    await engine.destroy(NAME, 7);
    assert.equal(alive(qemuPid), false);
  });
});
