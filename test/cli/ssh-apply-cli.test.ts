// `vfleet apply` onto `engine: ssh` hosts, end to end: the CLI (node bin/vfleet.js) with a test
// Redis, three real sshd hosts on loopback addresses of this file's own (and a fourth pinned
// with the wrong key), the test images. One fleet goes through the steps a user takes, each a
// test that builds on the one before:
//
//   1. apply: a sandbox, a VM and a sandbox with a hostile argv, checked from /proc, over QMP, on
//      the serial console, and in the argv the sandbox received
//   2. apply again: nothing to do, nothing touched
//   3. the VM must move: it runs on the target with its disk, nothing is left on the source
//   4. a host pinned with another key: its action fails naming both fingerprints, nothing
//      reaches it, the others converge
//   5. every connection dropped while jobs run: retried, converged, every instance once
//   6. scaled to zero: no process, no instance folder, no cgroup
import assert from 'node:assert/strict';
import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { qmp } from '../../src/engines/real/qmp-client.js';
import { RealEngine } from '../../src/engines/real/real-engine.js';
import type { FleetDocument } from '../../src/model/fleet-spec.generated.js';
import { FleetState } from '../../src/state/fleet-state.js';
import { SshTransport } from '../../src/transport/ssh-transport.js';
import {
  type EngineTestImages,
  engineTestImages,
  tinyVmImage,
} from '../helpers/engine-test-images.js';
import { fromRoot } from '../helpers/paths.js';
import {
  alive,
  cleanUp,
  hostCgroup,
  processesUsing,
  SANDBOX_COMMAND,
} from '../helpers/real-hosts.js';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';
import { aGroup, aHost, anImage, toYaml } from '../helpers/spec-builders.js';
import { keygen, startSshd, type TestSshd } from '../helpers/sshd.js';
import { runVfleet } from '../helpers/vfleet-cli.js';

const _bin = fromRoot('bin', 'vfleet.js');
const suffix = process.pid.toString(36);
const fleetName = `ssh-e2e-${suffix}`;
const OS = { family: 'debian', release: '12', arch: 'x86_64' } as const;

interface TestHost {
  readonly name: string;
  readonly sshd: TestSshd;
  readonly dataDir: string;
  readonly labels: Record<string, string>;
  /** The key the spec pins: the sshd's own, except for the host pinned wrong. */
  hostKey: string;
  /** The test's own view of the host (describe, QMP), over ssh like the CLI's. */
  engine?: RealEngine;
  transport?: SshTransport;
}

/** What the steps change in the spec. */
interface Shape {
  readonly boxes: number;
  readonly vms: number;
  readonly vmSlot: 'a' | 'b';
  readonly hostile: number;
  /** The host pinned with another key, and one instance that can only go there. */
  readonly wrongKey: boolean;
}

/**
 * Values no shell may ever parse. The spec refuses NUL, CR, LF and other control characters (a
 * tab aside) in a command; everything else is allowed, so everything else is here.
 */
function hostileArgs(canary: string): string[] {
  return [
    `$(touch ${canary})`,
    `\`touch ${canary}\``,
    `; touch ${canary}`,
    `| touch ${canary}`,
    `&& touch ${canary} #`,
    `' ; touch ${canary} ; '`,
    `" ; touch ${canary} ; "`,
    `'\\''; touch ${canary}`,
    `> ${canary}`,
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell expansion that must not happen
    '$HOME ${PATH} $0 $1 $@ $((6*7)) * ? ~ [a-z] {a,b} !',
    '\\ \\\\ \\n \\t %s %d %% \\x41',
    '\ttabs\tand  spaces  ',
    '-n',
    '--',
    'é ü 日本 🚀',
  ];
}

/** PID 1 of the hostile sandbox: writes each argument it got between <>, then waits for TERM. */
const HOSTILE_SCRIPT =
  'printf "<%s>\\n" "$@" > /argv.txt; trap "exit 0" TERM; while :; do sleep 1 & wait; done';

async function waitUntil(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (check()) return true;
    await delay(50);
  }
  return check();
}

const textOf = (path: string) => (existsSync(path) ? readFileSync(path, 'utf8') : '');

/** Every process's argument vector, by pid (this one's aside). */
function commandLines(): Map<number, string[]> {
  const found = new Map<number, string[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (argv.length > 1) found.set(Number(entry), argv);
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

interface StatusInstance {
  instance: string;
  host: string;
  status: string;
  generation: number;
}

describe('vfleet apply onto ssh hosts', () => {
  let images: EngineTestImages;
  let server: TestRedisServer;
  let dir: string;
  let canary: string;
  const nodes: TestHost[] = [];
  let a: TestHost;
  let b: TestHost;
  let wrong: TestHost;
  let pinnedFingerprint: string;
  /** Every pid an instance had, to check that none outlives it. */
  const pids = new Map<string, number[]>();

  before(async () => {
    images = await engineTestImages();
    server = await startRedisServer({ args: ['--maxmemory-policy', 'noeviction'], tcp: true });
    dir = mkdtempSync(`${tmpdir()}/vfleet-ssh-cli-`);
    canary = `${tmpdir()}/vfleet-canary-${suffix}`;
    const slots = [
      ['127.0.0.44', { pool: 'good', slot: 'a' }],
      ['127.0.0.45', { pool: 'good', slot: 'b' }],
      ['127.0.0.46', { pool: 'good', slot: 'c' }],
      ['127.0.0.47', { pool: 'bad' }],
    ] as const;
    for (const [i, [address, labels]] of slots.entries()) {
      const sshd = await startSshd({ address });
      nodes.push({
        name: `e2e-${i + 1}-${suffix}`,
        sshd,
        dataDir: `${sshd.dir}/data`,
        labels,
        hostKey: sshd.hostKey,
      });
    }
    [a, b] = nodes as [TestHost, TestHost];
    wrong = nodes[3] as TestHost;
    // A key of the same kind that the host does not have: the key exchange itself must fail.
    const pin = keygen(`${dir}/not-the-host-key`);
    wrong.hostKey = pin.publicLine;
    pinnedFingerprint = pin.fingerprint;
    for (const n of nodes.slice(0, 3)) {
      const host = n.sshd.host(n.name);
      n.transport = new SshTransport(host);
      n.engine = new RealEngine(host, n.transport, { qemu: { accel: 'tcg' } });
    }
  });

  after(async () => {
    const left: number[] = [];
    for (const n of nodes) {
      await n.transport?.close().catch(() => undefined);
      left.push(...(await cleanUp(n.dataDir, n.name)).pids);
      await n.sshd.stop();
    }
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (canary) rmSync(canary, { force: true });
    assert.deepEqual(left, [], 'no process outlives the suite');
  });

  function spec(shape: Shape): string {
    const hosts = (shape.wrongKey ? nodes : nodes.slice(0, 3)).map((n) =>
      aHost({
        name: n.name,
        engine: 'ssh',
        address: n.sshd.address,
        port: n.sshd.port,
        user: 'root',
        hostKey: n.hostKey,
        identityFile: n.sshd.clientKeyPath,
        dataDir: n.dataDir,
        labels: n.labels,
        cpu: { sockets: 1, coresPerSocket: 2, threadsPerCore: 1 },
        memoryMiB: 4096,
        diskGiB: 20,
        os: OS,
        runs: ['vm', 'container'],
        overcommit: { cpu: 8, memory: 1 },
      }),
    );
    const container = { kind: 'container', os: OS, source: { rootfs: images.rootfs } } as const;
    const small = { vcpus: 1, memoryMiB: 64, diskGiB: 1 };
    const document: FleetDocument = {
      apiVersion: 'vfleet/v1',
      kind: 'Fleet',
      metadata: { name: fleetName },
      spec: {
        failover: { tolerate: 0 },
        hosts: hosts as FleetDocument['spec']['hosts'],
        images: [
          anImage({
            name: 'busybox',
            ...container,
            command: SANDBOX_COMMAND as [string, ...string[]],
            packages: {},
          }),
          anImage({
            name: 'hostile',
            ...container,
            command: ['/bin/sh', '-c', HOSTILE_SCRIPT, 'argv', ...hostileArgs(canary)],
            packages: {},
          }),
          tinyVmImage(images, OS),
        ],
        instances: [
          aGroup({
            name: 'box',
            image: 'busybox',
            replicas: shape.boxes,
            resources: small,
            placement: { spread: 'slot', requireLabels: { pool: 'good' } },
          }),
          aGroup({
            name: 'argv',
            image: 'hostile',
            replicas: shape.hostile,
            resources: small,
            placement: { requireLabels: { pool: 'good' } },
          }),
          aGroup({
            name: 'vm',
            image: 'tiny-vm',
            replicas: shape.vms,
            resources: { vcpus: 1, memoryMiB: 128, diskGiB: 1 },
            placement: { requireLabels: { slot: shape.vmSlot } },
          }),
          ...(shape.wrongKey
            ? [
                aGroup({
                  name: 'lost',
                  image: 'busybox',
                  replicas: 1,
                  resources: small,
                  placement: { requireLabels: { pool: 'bad' } },
                }),
              ]
            : []),
        ],
      },
    };
    return toYaml(document);
  }

  function vfleet(args: string[], whileRunning?: (done: () => boolean) => Promise<void>) {
    const env = {
      REDIS_URL: `${server.url}/0`,
      // The test images live outside the spec's folder: allowed, as a user would (README).
      VFLEET_ALLOW_PATHS: images.dir,
      VFLEET_QEMU_ACCEL: 'tcg',
      VFLEET_VM_STOP_TIMEOUT_MS: '3000',
      VFLEET_SANDBOX_STOP_TIMEOUT_MS: '3000',
    };
    return runVfleet(args, dir, env, 180_000, whileRunning);
  }

  async function apply(shape: Shape, whileRunning?: (done: () => boolean) => Promise<void>) {
    writeFileSync(`${dir}/fleet.yaml`, spec(shape));
    return vfleet(['apply', '--auto-approve'], whileRunning);
  }

  async function status(): Promise<StatusInstance[]> {
    const out = await vfleet(['status', '--json']);
    assert.equal(out.code, 0, out.stderr);
    return (JSON.parse(out.stdout) as { instances: StatusInstance[] }).instances.sort((x, y) =>
      x.instance.localeCompare(y.instance),
    );
  }

  const nodeOf = (host: string) => nodes.find((n) => n.name === host) as TestHost;
  const instanceDir = (n: TestHost, name: string) => `${n.dataDir}/instances/${name}`;
  /** The good hosts that hold a folder for the instance. */
  const holders = (name: string) =>
    nodes.slice(0, 3).filter((n) => existsSync(instanceDir(n, name)));
  const remember = (name: string, ...more: Array<number | undefined>) => {
    pids.set(name, [
      ...(pids.get(name) ?? []),
      ...more.filter((p): p is number => p !== undefined),
    ]);
  };

  it('creates a sandbox and a VM over ssh: the VM runs and its guest says so, the sandbox has its own pid namespace and root', async (t) => {
    const started = Date.now();
    const first = await apply({ boxes: 1, vms: 1, vmSlot: 'a', hostile: 1, wrongKey: false });
    t.diagnostic(`first apply (3 creates, images staged over ssh): ${Date.now() - started} ms`);
    assert.equal(first.code, 0, first.stderr + first.stdout);
    assert.match(first.stdout, /Plan: 3 to create, 0 to move/);
    const listed = await status();
    assert.deepEqual(
      listed.map((i) => [i.instance, i.status]),
      [
        ['argv-0', 'running'],
        ['box-0', 'running'],
        ['vm-0', 'running'],
      ],
    );
    assert.equal(listed.find((i) => i.instance === 'vm-0')?.host, a.name);

    // The VM: QEMU's own run state, asked over QMP through the ssh host's streamlocal channel.
    const vm = await a.engine?.describe('vm-0');
    assert.equal(vm?.runtime?.state, 'running');
    assert.ok(alive(vm?.runtime?.pid));
    remember('vm-0', vm?.runtime?.pid);
    const serial = `${instanceDir(a, 'vm-0')}/serial.log`;
    assert.ok(
      await waitUntil(() => textOf(serial).includes(images.readyMarker), 60_000),
      `no ${images.readyMarker} in ${serial}: ${textOf(serial).slice(-500)}`,
    );
    t.diagnostic(`first apply until ${images.readyMarker}: ${Date.now() - started} ms`);

    // The sandbox: PID 1 of a pid namespace of its own, chrooted into its rootfs.
    const boxHost = nodeOf(listed.find((i) => i.instance === 'box-0')?.host as string);
    const box = await boxHost.engine?.describe('box-0');
    const init = box?.runtime?.initPid;
    assert.ok(alive(init) && alive(box?.runtime?.pid));
    remember('box-0', box?.runtime?.pid, init);
    assert.notEqual(readlinkSync(`/proc/${init}/ns/pid`), readlinkSync('/proc/self/ns/pid'));
    assert.equal(
      readlinkSync(`/proc/${init}/root`),
      realpathSync(`${instanceDir(boxHost, 'box-0')}/rootfs`),
    );
    const nspid = /^NSpid:\s+(.*)$/m.exec(readFileSync(`/proc/${init}/status`, 'utf8'))?.[1];
    assert.deepEqual(nspid?.split(/\s+/).map(Number), [init, 1]);
  });

  it('passes a hostile argv through the spec, the queue and ssh byte for byte, and no shell runs any of it', async () => {
    const [on] = holders('argv-0');
    assert.ok(on, 'argv-0 is on one of the hosts');
    const argvFile = `${instanceDir(on, 'argv-0')}/rootfs/argv.txt`;
    const expected = hostileArgs(canary)
      .map((arg) => `<${arg}>\n`)
      .join('');
    assert.ok(await waitUntil(() => textOf(argvFile) === expected, 30_000), textOf(argvFile));
    assert.deepEqual(readFileSync(argvFile), Buffer.from(expected, 'utf8'));
    const sandbox = await on.engine?.describe('argv-0');
    remember('argv-0', sandbox?.runtime?.pid, sandbox?.runtime?.initPid);
    assert.equal(existsSync(canary), false, 'the canary on the host');
    assert.equal(existsSync(`${instanceDir(on, 'argv-0')}/rootfs${canary}`), false, 'inside');
  });

  it('changes nothing on a second apply', async () => {
    const second = await apply({ boxes: 1, vms: 1, vmSlot: 'a', hostile: 1, wrongKey: false });
    assert.equal(second.code, 0, second.stderr + second.stdout);
    assert.match(second.stdout, /^No changes\./);
    assert.match(
      second.stdout,
      /Plan: 0 to create, 0 to move, 0 to update, 0 to patch, 0 to destroy\./,
    );
    for (const [name, seen] of pids) {
      for (const pid of seen) assert.ok(alive(pid), `${name}: pid ${pid} still runs`);
    }
  });

  it('moves the VM to the host its group now requires: it runs there on its own disk, nothing is left on the source', async (t) => {
    // A marker in the running guest's disk, written by its own QEMU (HMP qemu-io) over ssh.
    const socket = `${instanceDir(a, 'vm-0')}/qmp.sock`;
    const wrote = await qmp(a.transport as SshTransport, socket, 'human-monitor-command', {
      'command-line': 'qemu-io virtio0 "write -P 0x5a 1M 64k"',
    });
    assert.doesNotMatch(String(wrote), /error|failed/i, String(wrote));
    const started = Date.now();
    const moved = await apply({ boxes: 1, vms: 1, vmSlot: 'b', hostile: 1, wrongKey: false });
    t.diagnostic(
      `move apply (a live migration: boot files staged, disk mirrored, memory migrated): ${Date.now() - started} ms`,
    );
    assert.equal(moved.code, 0, moved.stderr + moved.stdout);
    assert.match(moved.stdout, /Plan: 0 to create, 1 to move/);
    assert.deepEqual(
      (await status()).filter((i) => i.instance === 'vm-0').map((i) => [i.host, i.status]),
      [[b.name, 'running']],
    );
    const there = await b.engine?.describe('vm-0');
    assert.equal(there?.runtime?.state, 'running');
    remember('vm-0', there?.runtime?.pid);
    const read = await b.transport?.exec([
      'qemu-io',
      '-f',
      'qcow2',
      '-r',
      '-U',
      '-c',
      'read -P 0x5a 1M 64k',
      `${instanceDir(b, 'vm-0')}/disk.qcow2`,
    ]);
    assert.match(read?.stdout.toString() ?? '', /read 65536\/65536 bytes/);
    assert.doesNotMatch(read?.stdout.toString() ?? '', /Pattern verification failed/);
    // Nothing on the source: no folder, no QEMU.
    assert.equal(existsSync(instanceDir(a, 'vm-0')), false);
    assert.equal(alive(pids.get('vm-0')?.[0]), false);
    assert.deepEqual(processesUsing(instanceDir(a, 'vm-0')), []);
  });

  it("fails a wrongly pinned host's actions with both fingerprints, sends it nothing, and converges the others", async () => {
    const bad = await apply({ boxes: 2, vms: 1, vmSlot: 'b', hostile: 1, wrongKey: true });
    assert.equal(bad.code, 1, bad.stderr + bad.stdout);
    assert.match(bad.stdout, /Plan: 2 to create, 0 to move/);
    const failure = bad.stderr
      .split('\n')
      .find((l) => l.startsWith('  ! ') && l.includes('lost-0'));
    assert.ok(failure, bad.stderr);
    assert.notEqual(pinnedFingerprint, wrong.sshd.hostKeyFingerprint);
    assert.match(failure, /host-key-mismatch/);
    assert.ok(failure.includes(wrong.name), failure);
    assert.ok(failure.includes(`${wrong.sshd.address}:${wrong.sshd.port}`), failure);
    assert.ok(failure.includes(wrong.sshd.hostKeyFingerprint), `the presented key: ${failure}`);
    assert.ok(failure.includes(pinnedFingerprint), `the pinned key: ${failure}`);
    assert.match(bad.stdout, /Apply incomplete: 1 done, 1 failed/);
    // It was reached (the key exchange), and nothing after it: no authentication, no session.
    const log = wrong.sshd.log();
    assert.match(log, /Connection from/);
    assert.doesNotMatch(log, /publickey|Accepted|Postponed|Failed|Starting session/);
    assert.equal(existsSync(wrong.dataDir), false, 'nothing made under its dataDir');
    // The good hosts converged: the new box runs.
    const listed = await status();
    assert.equal(listed.find((i) => i.instance === 'box-1')?.status, 'running');
    assert.equal(
      listed.some((i) => i.instance === 'lost-0'),
      false,
    );
  });

  it('retries the jobs a dropped connection broke and converges with every instance exactly once', async (t) => {
    const events = new FleetState(server.client(), fleetName);
    const before = new Set((await events.readEvents(1000)).map((e) => e.id));
    let dropped = '';
    const started = Date.now();
    const result = await apply(
      { boxes: 6, vms: 2, vmSlot: 'b', hostile: 1, wrongKey: false },
      async (done) => {
        // The moment a host is unpacking a sandbox's rootfs (a command in flight on an ssh
        // channel), every connection to every host drops.
        const dataDirs = nodes.slice(0, 3).map((n) => n.dataDir);
        while (!done() && !dropped) {
          for (const [pid, argv] of commandLines()) {
            if (argv[0] === 'tar' && dataDirs.some((d) => argv.some((x) => x.startsWith(d)))) {
              for (const n of nodes.slice(0, 3)) n.sshd.dropConnections();
              dropped = `${pid} ${argv.join(' ')}`;
              break;
            }
          }
          await delay(5);
        }
      },
    );
    t.diagnostic(`apply with a drop (5 sandboxes, 1 VM): ${Date.now() - started} ms`);
    assert.ok(dropped, 'the connections were dropped while a command ran');
    t.diagnostic(`dropped while running: ${dropped}`);
    assert.equal(result.code, 0, result.stderr + result.stdout);
    assert.match(result.stdout, /Plan: 5 to create, 0 to move/);
    // The drop broke at least one job, which was tried again.
    const broken = (await events.readEvents(1000)).filter(
      (e) => !before.has(e.id) && e.event.outcome === 'failed',
    );
    assert.ok(
      broken.some((e) => /connection-lost|host-unreachable/.test(String(e.event.error))),
      JSON.stringify(broken),
    );
    const expected = [
      'argv-0',
      ...Array.from({ length: 6 }, (_, i) => `box-${i}`),
      'vm-0',
      'vm-1',
    ].sort();
    const listed = await status();
    assert.deepEqual(
      listed.map((i) => [i.instance, i.status]),
      expected.map((name) => [name, 'running']),
    );
    for (const name of expected) {
      const on = holders(name);
      assert.equal(on.length, 1, `${name} has one folder, on ${on.map((n) => n.name)}`);
      // QEMU names its instance folder; of a sandbox, `unshare` alone names the rootfs.
      const marker = name.startsWith('vm-') ? '/' : '/rootfs';
      const running = nodes.flatMap((n) => processesUsing(`${instanceDir(n, name)}${marker}`));
      assert.equal(running.length, 1, `${name}: one process (${running})`);
      assert.equal(listed.find((i) => i.instance === name)?.host, (on[0] as TestHost).name);
      remember(name, ...running);
    }
  });

  it('scales everything to zero and leaves no process, no instance folder and no cgroup', async () => {
    const down = await apply({ boxes: 0, vms: 0, vmSlot: 'b', hostile: 0, wrongKey: false });
    assert.equal(down.code, 0, down.stderr + down.stdout);
    assert.match(
      down.stdout,
      /Plan: 0 to create, 0 to move, 0 to update, 0 to patch, 9 to destroy/,
    );
    assert.deepEqual(await status(), []);
    for (const [name, seen] of pids) {
      for (const pid of seen) assert.equal(alive(pid), false, `${name}: pid ${pid} is gone`);
    }
    for (const n of nodes.slice(0, 3)) {
      assert.deepEqual(readdirSync(`${n.dataDir}/instances`), [], n.name);
      assert.deepEqual(processesUsing(n.dataDir), [], n.name);
      const cgroup = hostCgroup(n.name);
      if (cgroup && existsSync(cgroup)) {
        const children = readdirSync(cgroup, { withFileTypes: true }).filter((d) =>
          d.isDirectory(),
        );
        assert.deepEqual(children, [], `${n.name}: no sandbox cgroup left`);
      }
    }
  });
});
