// Patching a VM on a real host (an `engine: local` host, QEMU under TCG): the Debian 12 guest of
// scripts/build-apt-vm-image.sh, booted once for the whole file (a boot costs tens of seconds
// under TCG), patched with its own apt-get over ssh from the demo repository, which its QEMU
// forwards to it (guestfwd to 127.0.0.1 only). First the whole CLI (`vfleet apply` boots it,
// `vfleet plan` proposes the patch from what the guest's dpkg said, `vfleet apply` patches it,
// with the group's onFailure: rollback), then RealEngine.patch on the same VM for what a rollout
// rarely shows: a simulation that fails, a rollback by snapshot, a failure left as it is.
// Checked from outside, with OpenSSH's own client into the guest: dpkg's database there, what the
// repository was asked for, the snapshots in the disk, QEMU's process.
import assert from 'node:assert/strict';
import { type ChildProcess, execFile } from 'node:child_process';
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
import { type AptVmImage, aptVmImage } from '../helpers/apt-vm-image.js';
import { alive, cleanUp, realHost } from '../helpers/real-hosts.js';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';
import { aGroup, aHost, anImage, toYaml } from '../helpers/spec-builders.js';
import { spawnVfleet } from '../helpers/vfleet-cli.js';

const run = promisify(execFile);
const suffix = process.pid.toString(36);
const NAME = 'web-0';
const SNAPSHOT = 'vfleet-pre-patch';
const OS = { family: 'debian', release: '12', arch: 'x86_64' } as const;

describe('RealEngine.patch: apt-get in a VM guest over ssh, with a snapshot to roll back to', () => {
  let image: AptVmImage;
  let repo: AptRepoServer;
  let dir: string;
  let dataDir: string;
  let engine: RealEngine;
  let server: TestRedisServer;
  let qemuPid: number | undefined;
  /** The next generation above what the host has seen (the CLI's, then ours). */
  const next = async () => ((await engine.describe(NAME))?.generation ?? 0) + 1;
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

  const fleet = (): string =>
    toYaml({
      apiVersion: 'vfleet/v1',
      kind: 'Fleet',
      metadata: { name: `vmp-${suffix}` },
      spec: {
        failover: { tolerate: 0 },
        hosts: [
          aHost({
            name: host,
            engine: 'local',
            dataDir,
            cpu: { sockets: 1, coresPerSocket: 2, threadsPerCore: 1 },
            memoryMiB: 4096,
            diskGiB: 20,
            os: OS,
            runs: ['vm'],
          }),
        ],
        images: [
          anImage({
            name: 'debian12-vm',
            kind: 'vm',
            os: OS,
            source: {
              disk: image.base,
              kernel: image.vmlinuz,
              initrd: image.initrd,
              cmdline: image.cmdline,
            },
            guest: {
              hostKey: image.hostKey,
              identityFile: image.loginKey,
              forwards: [{ port: 80, hostPort: Number(new URL(repo.url).port) }],
            },
            // What the image is said to have: the plan goes by what the guest's dpkg says.
            packages: { 'vfleet-demo-tls': '1.0-2' },
          }),
        ],
        patchBaselines: [
          {
            name: 'demo-tls',
            appliesTo: { family: 'debian', release: '12' },
            minimum: { 'vfleet-demo-tls': '1.0-2' },
          },
        ],
        instances: [
          aGroup({
            name: 'web',
            image: 'debian12-vm',
            replicas: 1,
            resources: { vcpus: 1, memoryMiB: 384, diskGiB: 2 },
            patchBaseline: 'demo-tls',
            patch: { onFailure: 'rollback' },
          }),
        ],
      },
    });
  const children: ChildProcess[] = [];
  const vfleet = async (args: string[]): Promise<{ code: number | null; out: string }> => {
    const env = {
      REDIS_URL: `${server.url}/0`,
      VFLEET_ALLOW_PATHS: `${image.dir}:${dir}`,
      VFLEET_QEMU_ACCEL: 'tcg',
      VFLEET_VM_STOP_TIMEOUT_MS: '5000',
    };
    const run = spawnVfleet(args, dir, env, children);
    const closed = new Promise((resolve) => run.child.once('close', resolve));
    // A bound for a loaded machine (a boot under TCG), not a timing test.
    const timer = setTimeout(() => run.child.kill('SIGKILL'), 600_000);
    await closed;
    clearTimeout(timer);
    return { code: await run.exited, out: run.output() };
  };

  before(async () => {
    image = await aptVmImage();
    repo = await serveAptRepo(`${image.dir}/apt-demo-repo`);
    server = await startRedisServer({ args: ['--maxmemory-policy', 'noeviction'], tcp: true });
    dir = mkdtempSync(`${tmpdir()}/vfleet-vmp-`);
    dataDir = `${dir}/data`;
    writeFileSync(`${dir}/known_hosts`, `vfleet-guest ${image.hostKey}\n`);
    engine = new RealEngine(realHost(host, dataDir), transport, {
      qemu: { accel: 'tcg', stopTimeoutMs: 5_000 },
    });
  });
  after(async () => {
    console.log(`vm-patch timings (ms): ${JSON.stringify(timings)}`);
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    const left = await cleanUp(dataDir, host);
    await repo?.stop();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(left.pids, [], 'no process outlives the suite');
  });

  it('vfleet apply boots the VM on a restricted network; its state has what the guest’s dpkg says', async () => {
    writeFileSync(`${dir}/fleet.yaml`, fleet());
    const first = await timed('apply-create', () => vfleet(['apply', '--auto-approve']));
    assert.equal(first.code, 0, first.out);
    assert.match(first.out, /Plan: 1 to create, 0 to move, 0 to update, 0 to patch, 0 to destroy/);
    const created = await engine.describe(NAME);
    assert.equal(created?.status, 'running');
    qemuPid = created?.runtime?.pid;
    // The spec says the image has 1.0-2: what the host reports is what dpkg said in the guest.
    assert.equal(created?.packages['vfleet-demo-tls'], '1.0-1');
    assert.equal(created?.packages['vfleet-demo-broken'], '1.0-1');
    assert.match(created?.packages['openssh-server'] ?? '', /^1:9\./);
    assert.match(created?.packages['linux-image-cloud-amd64'] ?? '', /^6\.1\./);
    assert.match(readFileSync(`${instanceDir()}/serial.log`, 'utf8'), /VFLEET-GUEST-READY/);
    // The guest reaches nothing but its forward, which goes to 127.0.0.1 only; its sshd is on
    // a loopback port of the host that QEMU picked.
    const port = new URL(repo.url).port;
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
    const probe =
      'timeout 5 bash -c "exec 3<>/dev/tcp/10.0.2.2/22" 2>/dev/null && echo open || echo closed';
    assert.equal((await inGuest(probe)).trim(), 'closed', 'restrict=on: the host is not reachable');
  });

  it('vfleet plan proposes the patch from the guest’s dpkg; vfleet apply installs exactly the baseline', async () => {
    const plan = await vfleet(['plan', '--detailed-exitcode']);
    assert.equal(plan.code, 2, plan.out);
    assert.match(plan.out, /Plan: 0 to create, 0 to move, 0 to update, 1 to patch, 0 to destroy/);
    assert.match(
      plan.out,
      /patch web-0 on .*: vfleet-demo-tls 1\.0-1 → 1\.0-2 \(baseline demo-tls\)/,
    );
    repo.requests.length = 0;
    const applied = await timed('apply-patch', () => vfleet(['apply', '--auto-approve']));
    assert.equal(applied.code, 0, applied.out);
    const now = await engine.describe(NAME);
    assert.equal(now?.runtime?.pid, qemuPid, 'patched in place, not restarted');
    assert.equal(now?.packages['vfleet-demo-tls'], '1.0-2');
    assert.equal(now?.lastPatch?.outcome, 'patched');
    assert.deepEqual(now?.lastPatch?.changed, [
      { package: 'vfleet-demo-lib', from: null, to: '1.0-1' },
      { package: 'vfleet-demo-tls', from: '1.0-1', to: '1.0-2' },
    ]);
    assert.equal(now?.lastPatch?.rebootRequired, true);
    // The guest itself.
    assert.equal(await dpkgOf('vfleet-demo-tls'), 'installed 1.0-2');
    assert.equal(await dpkgOf('vfleet-demo-lib'), 'installed 1.0-1');
    assert.equal((await inGuest('test -e /var/run/reboot-required && echo yes')).trim(), 'yes');
    // A booted guest starts its own services: no policy-rc.d was put in its way.
    assert.equal((await inGuest('cat /var/lib/vfleet-demo/policy-rc.d')).trim(), 'absent');
    // Through the forward, and never more than asked: 1.0-3 was not even downloaded.
    assert.ok(repo.requests.includes('/vfleet-demo-tls_1.0-2_all.deb'), repo.requests.join(' '));
    assert.ok(!repo.requests.some((r) => r.includes('1.0-3')), repo.requests.join(' '));
    assert.match(
      await inGuest('cat /etc/vfleet-demo/vfleet-demo-tls.conf'),
      /a local change, as an operator would make/,
    );
    // The group rolls back on failure: a snapshot was taken, and dropped after the success.
    assert.doesNotMatch(await snapshots(), new RegExp(SNAPSHOT));
    const again = await vfleet(['plan', '--detailed-exitcode']);
    assert.equal(again.code, 0, again.out);
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
      engine.patch(NAME, await next(), { 'vfleet-demo-tls': '9.9-9' }, { rollback: true }),
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
    assert.equal(await dpkgOf('vfleet-demo-tls'), 'installed 1.0-2', 'as the CLI left it');
  });

  it('rolls a failed postinst back from the snapshot: the guest as it was, dpkg included', async () => {
    const statusBefore = await inGuest('sha256sum /var/lib/dpkg/status');
    const bootBefore = await inGuest('cat /proc/sys/kernel/random/boot_id');
    await timed('patch-rolled-back', async () => {
      await assert.rejects(
        engine.patch(NAME, await next(), { 'vfleet-demo-broken': '1.0-2' }, { rollback: true }),
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

  it('re-reads the inventory from dpkg, and a patch run again does nothing', async () => {
    const inventory = await engine.inventory(NAME);
    assert.equal(inventory['vfleet-demo-tls'], '1.0-2');
    assert.deepEqual(inventory, (await engine.describe(NAME))?.packages);
    const again = await engine.patch(
      NAME,
      await next(),
      { 'vfleet-demo-tls': '1.0-2' },
      {
        rollback: true,
      },
    );
    assert.equal(again.lastPatch?.outcome, 'unchanged');
    assert.equal(again.lastPatch?.rebootRequired, true);
  });

  it('with onFailure stop, leaves a failed postinst as dpkg left it and says so', async () => {
    await assert.rejects(
      engine.patch(NAME, await next(), { 'vfleet-demo-broken': '1.0-2' }),
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
    // QEMU daemonizes: its CPU time is not this process's children's, so it is read here.
    const stat = readFileSync(`/proc/${qemuPid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    timings['qemu-cpu'] = (Number(fields[11]) + Number(fields[12])) * 10;
    await engine.destroy(NAME, await next());
    assert.equal(alive(qemuPid), false);
  });
});
