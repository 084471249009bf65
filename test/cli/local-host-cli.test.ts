// `vfleet apply` onto `engine: local`: the whole pipeline (plan, BullMQ jobs, worker, RealEngine
// over the local transport) puts real sandboxes on this machine, a second apply changes
// nothing, status shows them, and scaling to zero leaves no process and no folder.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { RealEngine } from '../../src/engines/real/real-engine.js';
import { LocalTransport } from '../../src/transport/local-transport.js';
import { engineTestImages } from '../helpers/engine-test-images.js';
import { fromRoot } from '../helpers/paths.js';
import {
  cleanUp,
  processesUsing,
  realHost,
  SANDBOX_COMMAND,
  sandboxRequest,
} from '../helpers/real-hosts.js';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';

const bin = fromRoot('bin', 'vfleet.js');
const host = `cli-${process.pid.toString(36)}`;

function spec(dataDir: string, rootfs: string, replicas: number): string {
  return `apiVersion: vfleet/v1
kind: Fleet
metadata: { name: local-${process.pid.toString(36)} }
spec:
  failover: { tolerate: 0 }
  hosts:
    - name: ${host}
      engine: local
      dataDir: ${dataDir}
      cpu: { sockets: 1, coresPerSocket: 2, threadsPerCore: 1 }
      memoryMiB: 2048
      diskGiB: 10
      os: { family: debian, release: "12", arch: x86_64 }
      runs: [container]
  images:
    - name: busybox
      kind: container
      os: { family: debian, release: "12", arch: x86_64 }
      source: { rootfs: ${rootfs} }
      command: [/bin/sh, -c, 'trap "exit 0" TERM; while :; do sleep 1 & wait; done']
  instances:
    - name: box
      image: busybox
      replicas: ${replicas}
      resources: { vcpus: 1, memoryMiB: 64, diskGiB: 1 }
`;
}

describe('vfleet apply onto a local host', () => {
  let server: TestRedisServer;
  let dir: string;
  let dataDir: string;
  before(async () => {
    server = await startRedisServer({ args: ['--maxmemory-policy', 'noeviction'], tcp: true });
    dir = mkdtempSync(`${tmpdir()}/vfleet-local-cli-`);
    dataDir = `${dir}/data`;
  });
  after(async () => {
    const left = await cleanUp(dataDir, host);
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(left.pids, []);
  });

  let imagesDir = '';
  const vfleet = (args: string[]) => {
    const result = spawnSync(process.execPath, [bin, ...args], {
      cwd: dir,
      encoding: 'utf8',
      // The test images live outside the spec's folder: allowed, as a user would (README).
      env: { ...process.env, REDIS_URL: `${server.url}/0`, VFLEET_ALLOW_PATHS: imagesDir },
      timeout: 60_000,
    });
    return { code: result.status, stdout: result.stdout, stderr: result.stderr };
  };

  it('creates real sandboxes, adopts one the state did not know, changes nothing the second time, and removes them', async () => {
    const images = await engineTestImages();
    imagesDir = images.dir;
    const { rootfs } = images;
    writeFileSync(`${dir}/fleet.yaml`, spec(dataDir, rootfs, 2));
    // An instance the host runs but the state never recorded (an apply that died after the
    // create): the next plan adopts it instead of creating it a second time.
    const engine = new RealEngine(realHost(host, dataDir), new LocalTransport(host));
    const request = sandboxRequest(images, 'box-0', 1);
    await engine.create({ ...request, image: { ...request.image, command: SANDBOX_COMMAND } });
    const first = vfleet(['apply', '--auto-approve']);
    assert.equal(first.code, 0, first.stderr + first.stdout);
    assert.match(first.stdout, /Plan: 1 to create/);
    assert.deepEqual(readdirSync(`${dataDir}/instances`).sort(), ['box-0', 'box-1']);
    for (const name of ['box-0', 'box-1']) {
      assert.equal(processesUsing(`${dataDir}/instances/${name}/rootfs`).length, 1, name);
    }
    const status = JSON.parse(vfleet(['status', '--json']).stdout) as {
      instances: Array<{ instance: string; status: string; host: string }>;
    };
    assert.deepEqual(status.instances.map((i) => [i.instance, i.status, i.host]).sort(), [
      ['box-0', 'running', host],
      ['box-1', 'running', host],
    ]);
    const second = vfleet(['apply', '--auto-approve']);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /^No changes\./);

    writeFileSync(`${dir}/fleet.yaml`, spec(dataDir, rootfs, 0));
    const down = vfleet(['apply', '--auto-approve']);
    assert.equal(down.code, 0, down.stderr + down.stdout);
    assert.match(down.stdout, /2 to destroy/);
    assert.deepEqual(readdirSync(`${dataDir}/instances`), []);
    assert.deepEqual(processesUsing(dataDir), []);
    assert.equal(existsSync(`${dataDir}/fence/box-0`), true, 'the fence outlives the instance');
  });

  it("warns where the host's own facts disagree with the spec: status and plan", () => {
    const rootfs = `${dir}/no-such-rootfs.tar.gz`;
    const wrong = spec(dataDir, rootfs, 0)
      .replace('memoryMiB: 2048', 'memoryMiB: 99999999')
      .replace('diskGiB: 10\n', 'diskGiB: 999999\n')
      .replace(
        'os: { family: debian, release: "12", arch: x86_64 }\n      runs',
        'os: { family: debian, release: "11", arch: x86_64 }\n      runs',
      );
    writeFileSync(`${dir}/fleet.yaml`, wrong);
    const status = vfleet(['status', '--json']);
    assert.equal(status.code, 0, status.stderr);
    const warnings = JSON.parse(status.stdout).warnings as string[];
    assert.ok(
      warnings.some((w) =>
        w.startsWith(`${host}: the spec says 99999999 MiB of memory, the host has `),
      ),
      warnings.join('\n'),
    );
    assert.ok(
      warnings.some((w) => w.includes('GiB of disk')),
      warnings.join('\n'),
    );
    assert.ok(
      warnings.some((w) =>
        /the spec says debian 11 x86_64, the host runs debian 12 x86_64/.test(w),
      ),
      warnings.join('\n'),
    );
    const plan = vfleet(['plan']);
    assert.equal(plan.code, 0, plan.stderr);
    assert.match(plan.stderr, /^Warning: .* MiB of memory/m);
  });

  it('refuses injected faults on a local host, with the engine named', () => {
    writeFileSync(`${dir}/fleet.yaml`, spec(dataDir, `${dir}/no-such-rootfs.tar.gz`, 0));
    for (const fault of ['fail', 'partition', 'recover']) {
      const refused = vfleet(['host', fault, host]);
      assert.equal(refused.code, 1, fault);
      assert.match(refused.stderr, /uses the local engine, which takes no injected faults/);
    }
    const status = JSON.parse(vfleet(['status', '--json']).stdout) as {
      hosts: Array<{ name: string; health: string }>;
    };
    assert.deepEqual(
      status.hosts.map((h) => [h.name, h.health]),
      [[host, 'ok']],
    );
  });
});
