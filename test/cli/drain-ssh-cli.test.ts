// `vfleet host drain NAME --auto-approve` on ssh hosts (docs/replication.md, "Live migration and
// drain"), end to end: the CLI with a test Redis, two real sshd hosts on loopback addresses of
// this file's own, a VM of the test images that counts on its disk. The drain empties the VM's
// host by a live migration — the plan says so, one `migrated` event with its downtime and no
// fallback, the instance running on the other host at a newer generation, nothing left on the
// drained one — while the guest's count, watched on both consoles, never goes back.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import type { FleetDocument } from '../../src/model/fleet-spec.generated.js';
import { countBreaks, gapAcross, watchCounters } from '../helpers/counter-watch.js';
import { type EngineTestImages, engineTestImages } from '../helpers/engine-test-images.js';
import { cleanUp, processesUsing } from '../helpers/real-hosts.js';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';
import { aGroup, aHost, anImage, toYaml } from '../helpers/spec-builders.js';
import { startSshd, type TestSshd } from '../helpers/sshd.js';
import {
  fleetEvents,
  pollUntil,
  type StatusJson,
  spawnVfleet,
  vfleet,
} from '../helpers/vfleet-cli.js';

const OS = { family: 'debian', release: '12', arch: 'x86_64' } as const;
const VM = 'db-0';

describe('vfleet host drain on ssh hosts', () => {
  const suffix = process.pid.toString(36);
  const children: ChildProcess[] = [];
  let images: EngineTestImages;
  let server: TestRedisServer;
  let sshds: TestSshd[] = [];
  let names: string[] = [];
  let dir: string;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    images = await engineTestImages();
    server = await startRedisServer({ args: ['--maxmemory-policy', 'noeviction'], tcp: true });
    sshds = await Promise.all(
      ['127.0.0.74', '127.0.0.75'].map((address) => startSshd({ address })),
    );
    names = sshds.map((_, i) => `drain-${i + 1}-${suffix}`);
    dir = mkdtempSync(`${tmpdir()}/vfleet-drain-ssh-`);
    env = {
      REDIS_URL: `${server.url}/0`,
      // The test images live outside the spec's folder: allowed, as a user would (README).
      VFLEET_ALLOW_PATHS: images.dir,
      VFLEET_QEMU_ACCEL: 'tcg',
      VFLEET_VM_STOP_TIMEOUT_MS: '3000',
    };
  });

  after(async () => {
    for (const child of children) child.kill('SIGKILL');
    // The VM still runs on the host it moved to: killed here, with the hosts.
    for (const [i, sshd] of sshds.entries()) {
      await cleanUp(`${sshd.dir}/data`, names[i] as string);
      await sshd.stop();
    }
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function spec(): string {
    const document: FleetDocument = {
      apiVersion: 'vfleet/v1',
      kind: 'Fleet',
      metadata: { name: `drain-ssh-${suffix}` },
      spec: {
        failover: { tolerate: 0 },
        hosts: sshds.map((sshd, i) =>
          aHost({
            name: names[i] as string,
            engine: 'ssh',
            address: sshd.address,
            port: sshd.port,
            user: 'root',
            hostKey: sshd.hostKey,
            identityFile: sshd.clientKeyPath,
            dataDir: `${sshd.dir}/data`,
            labels: {},
            cpu: { sockets: 1, coresPerSocket: 2, threadsPerCore: 1 },
            memoryMiB: 4096,
            diskGiB: 20,
            os: OS,
            runs: ['vm'],
          }),
        ) as FleetDocument['spec']['hosts'],
        images: [
          anImage({
            name: 'counter-vm',
            kind: 'vm',
            os: OS,
            source: {
              disk: images.base,
              kernel: images.vmlinux,
              initrd: images.initrd,
              cmdline: `${images.cmdline} cryptomgr.notests vfleet.counter`,
            },
            packages: {},
          }),
        ],
        licenses: [],
        patchBaselines: [],
        instances: [
          aGroup({
            name: 'db',
            image: 'counter-vm',
            replicas: 1,
            resources: { vcpus: 1, memoryMiB: 128, diskGiB: 1 },
          }),
        ],
      },
    };
    return toYaml(document);
  }

  const status = () => JSON.parse(vfleet(['status', '--json'], dir, env).stdout) as StatusJson;
  const dataDir = (host: string) => `${sshds[names.indexOf(host)]?.dir}/data`;
  const serial = (host: string) => `${dataDir(host)}/instances/${VM}/serial.log`;

  it('empties the host of a running VM by live migration: it keeps running, its count never goes back', async (t) => {
    writeFileSync(`${dir}/fleet.yaml`, spec());
    const applied = vfleet(['apply', '--auto-approve'], dir, env);
    assert.equal(applied.code, 0, applied.stderr + applied.stdout);
    const before = status().instances.find((i) => i.instance === VM);
    assert.equal(before?.status, 'running');
    const from = before?.host as string;
    const to = names.find((n) => n !== from) as string;
    const watch = watchCounters([serial(from), serial(to)]);
    try {
      await pollUntil('the guest counts', () =>
        watch.values(serial(from)).length >= 2 ? true : undefined,
      );

      // Asynchronously, so the consoles are watched while the drain runs.
      const drain = spawnVfleet(['host', 'drain', from, '--auto-approve'], dir, env, children);
      assert.equal(await drain.exited, 0, drain.output());
      assert.match(drain.output(), new RegExp(`Host ${from} is draining`));
      assert.match(drain.output(), new RegExp(`> move ${VM} from ${from} to ${to} live$`, 'm'));
      await pollUntil('the guest counts on its new host', () =>
        watch.values(serial(to)).length >= 2 ? true : undefined,
      ).catch((e) => {
        // What happened instead, for the reader of a failure.
        const tail = readText(serial(to)).slice(-600);
        const events = fleetEvents(dir, env).slice(-6);
        throw new Error(
          `${(e as Error).message}; events ${JSON.stringify(events)}; the new host's console ends ${JSON.stringify(tail)}`,
        );
      });
      watch.stop();
      assert.deepEqual(
        countBreaks(watch.seen),
        [],
        'the count only goes up (a line or two unseen at the switch at most)',
      );

      const now = status();
      const moved = now.instances.find((i) => i.instance === VM);
      assert.equal(moved?.host, to);
      assert.equal(moved?.status, 'running');
      assert.ok((moved?.generation ?? 0) > (before?.generation ?? 0));
      const drained = now.hosts.find((h) => h.name === from);
      assert.equal(drained?.health, 'draining');
      assert.deepEqual(drained?.running, []);
      assert.deepEqual(now.hosts.find((h) => h.name === to)?.running, [VM]);

      const events = fleetEvents(dir, env);
      const migrated = events.filter((e) => e.type === 'migrated');
      assert.equal(migrated.length, 1, JSON.stringify(events.slice(-10)));
      const event = migrated[0] as Record<string, unknown>;
      assert.equal(event.instance, VM);
      assert.equal(event.from, from);
      assert.equal(event.host, to);
      assert.equal(typeof event.downtimeMs, 'number');
      assert.equal(typeof event.qemuDowntimeMs, 'number');
      // Live, not stop-copy-start (a boot); 1 s is a speed target for a quiet machine, not a test.
      assert.ok((event.downtimeMs as number) < 5000, `downtime ${event.downtimeMs} ms`);
      assert.deepEqual(
        events.filter((e) => e.type === 'migration-fallback' || e.type === 'moved-stop-copy-start'),
        [],
      );
      t.diagnostic(
        `drain: downtime ${event.downtimeMs} ms (QEMU's ${event.qemuDowntimeMs} ms), migration ${event.durationMs} ms, console gap ${gapAcross(watch.seen, serial(from), serial(to))} ms`,
      );

      assert.equal(existsSync(`${dataDir(from)}/instances/${VM}`), false);
      assert.deepEqual(processesUsing(dataDir(from)), [], 'no QEMU left on the drained host');
    } finally {
      watch.stop();
    }
  });

  it('falls back to stop, copy, start when the migration cannot finish, and says so', async () => {
    const before = status().instances.find((i) => i.instance === VM);
    const from = before?.host as string;
    const to = names.find((n) => n !== from) as string;
    assert.equal(vfleet(['host', 'undrain', to], dir, env).code, 0);
    const lastCount = () => {
      const counts = [...readText(serial(from)).matchAll(/^VFLEET-COUNTER (\d+)\r?\n/gm)];
      return Number(counts.at(-1)?.[1]);
    };
    const printed = lastCount();
    // Held to 256 KiB/s for at most 1.5 s, the memory cannot all go: the move falls back.
    const drain = vfleet(['host', 'drain', from, '--auto-approve'], dir, {
      ...env,
      VFLEET_MIGRATION_BANDWIDTH: String(256 * 1024),
      VFLEET_MIGRATION_TIMEOUT_MS: '1500',
    });
    assert.equal(drain.code, 0, drain.stderr + drain.stdout);
    const events = fleetEvents(dir, env).filter((e) => e.instance === VM);
    const fallback = events.find((e) => e.type === 'migration-fallback');
    assert.equal(fallback?.from, from);
    assert.equal(fallback?.host, to);
    assert.match(
      String(fallback?.cause),
      /could not migrate live to .*did not complete within 1500 ms/,
    );
    const moved = events.find((e) => e.type === 'moved-stop-copy-start');
    assert.equal(moved?.from, from);
    assert.equal(typeof moved?.downtimeMs, 'number');
    assert.equal(events.filter((e) => e.type === 'migrated').length, 1, 'only the first move');

    const after = status().instances.find((i) => i.instance === VM);
    assert.equal(after?.host, to);
    assert.equal(after?.status, 'running');
    assert.ok((after?.generation ?? 0) > (before?.generation ?? 0));
    // Stopped, copied and booted there: the guest finds on its disk the count it had written.
    const boot = await pollUntil('the guest boots on its new host', () => {
      const found = /^VFLEET-COUNTER-BOOT (\d+)\r?$/m.exec(readText(serial(to)))?.[1];
      return found === undefined ? undefined : Number(found);
    });
    assert.ok(boot >= printed, `booted at ${boot}, had printed ${printed} before the drain`);
    assert.equal(existsSync(`${dataDir(from)}/instances/${VM}`), false);
    assert.deepEqual(processesUsing(dataDir(from)), [], 'no QEMU left on the drained host');
  });
});

function readText(path: string): string {
  return existsSync(path) ? readFileSync(path, 'utf8') : '';
}
