// `vfleet controller` on real hosts over ssh (issue 13's real-host cases): three sshd hosts on
// loopback addresses of this file's own, a protected sandbox and a protected VM applied onto one
// of them, the controller renewing the vfleet agent on each host. Then
//
//   (a) a partition: the host's sshd (listener and sessions) and its agent SIGSTOPped — its
//       instances keep running until the agent's watchdog kills them, then they restart on their
//       failover hosts; SIGCONT, and the host reports what its watchdog killed and its stale
//       copies are destroyed;
//   (b) a host killed outright: its sshd, its agent loops and every instance process SIGKILLed;
//       the instances restart on their failover hosts; the sshd started again, the agent is
//       started again and the stale copies are destroyed;
//   (c) a clean stop of the only controller disarms the agents (instances left running).
//
// The VM's disk is replicated to its failover host (docs/replication.md): before each fault its
// replica is complete, and its restart boots from the replica.
//
// All along, the process table is sampled every 100 ms: at every sample each instance has at
// most one QEMU or sandbox (`unshare`) process on all hosts together.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import type { FleetDocument } from '../../src/model/fleet-spec.generated.js';
import {
  type EngineTestImages,
  engineTestImages,
  tinyVmImage,
} from '../helpers/engine-test-images.js';
import { cleanUp, processesUsing, SANDBOX_COMMAND } from '../helpers/real-hosts.js';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';
import { aGroup, aHost, anImage, toYaml } from '../helpers/spec-builders.js';
import { startSshd, type TestSshd } from '../helpers/sshd.js';
import {
  pollUntil,
  runVfleet,
  type StatusJson,
  spawnVfleet,
  type VfleetRun,
} from '../helpers/vfleet-cli.js';

const suffix = process.pid.toString(36);
const OS = { family: 'debian', release: '12', arch: 'x86_64' } as const;
const TTL = '3s';
/** A bound for a loaded machine, not a timing target (bench:failover has those). */
const DEADLINE_MS = 120_000;

interface TestHost {
  readonly name: string;
  readonly sshd: TestSshd;
  readonly dataDir: string;
}

interface FleetEvent {
  type: string;
  host?: string;
  instance?: string;
  instances?: string[];
  generation?: number;
  hosts?: string[];
}

/** One copy of an instance: a QEMU or a sandbox's `unshare` process naming it under a dataDir. */
interface Copy {
  readonly instance: string;
  readonly host: string;
  readonly pid: number;
}

function procStat(pid: number): { state: string; ppid: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const [state = '', ppid = '0'] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state, ppid: Number(ppid) };
  } catch {
    return undefined;
  }
}

function cmdline(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * Every instance copy on the given hosts right now: one per host that has a live QEMU or
 * `unshare` naming the instance. Several processes of one instance on one host are one copy:
 * QEMU's -daemonize keeps its first process waiting until the daemon is ready (another process
 * with the same command line, for a moment), unshare --fork has a child before its exec; and two
 * QEMUs cannot both run one instance's disk (QEMU's image locking).
 */
function copies(hosts: readonly TestHost[]): Copy[] {
  const found: Copy[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    const line = cmdline(pid);
    if (!line) continue;
    const argv = line.split('\0');
    const program = argv[0] ?? '';
    const isQemu = program.includes('qemu-system');
    const isSandbox = program.endsWith('unshare');
    if (!isQemu && !isSandbox) continue;
    const stat = procStat(pid);
    if (!stat || stat.state === 'Z') continue;
    for (const h of hosts) {
      const prefix = `${h.dataDir}/instances/`;
      const arg = argv.find((a) =>
        isQemu
          ? a.startsWith(prefix) && a.endsWith('/qemu.pid')
          : a.startsWith(`--mount-proc=${prefix}`),
      );
      if (!arg) continue;
      const rest = arg.slice(arg.indexOf(prefix) + prefix.length);
      const instance = rest.split('/')[0] as string;
      if (!found.some((c) => c.instance === instance && c.host === h.name))
        found.push({ instance, host: h.name, pid });
    }
  }
  return found;
}

describe('vfleet controller on ssh hosts', () => {
  let images: EngineTestImages;
  let server: TestRedisServer;
  let dir: string;
  const hosts: TestHost[] = [];
  const children: ChildProcess[] = [];
  const stopped: number[] = [];
  let env: NodeJS.ProcessEnv;
  let sampler: NodeJS.Timeout | undefined;
  const doubles: string[] = [];
  let samples = 0;

  before(async () => {
    images = await engineTestImages();
    server = await startRedisServer({ args: ['--maxmemory-policy', 'noeviction'], tcp: true });
    dir = mkdtempSync(`${tmpdir()}/vfleet-ctl-ssh-`);
    for (const [i, address] of ['127.0.0.61', '127.0.0.62', '127.0.0.63'].entries()) {
      const sshd = await startSshd({ address });
      hosts.push({ name: `ctl-${i + 1}-${suffix}`, sshd, dataDir: `${sshd.dir}/data` });
    }
    env = {
      REDIS_URL: `${server.url}/0`,
      VFLEET_ALLOW_PATHS: images.dir,
      VFLEET_QEMU_ACCEL: 'tcg',
      VFLEET_VM_STOP_TIMEOUT_MS: '3000',
      VFLEET_SANDBOX_STOP_TIMEOUT_MS: '3000',
    };
  });

  after(async () => {
    if (sampler) clearInterval(sampler);
    for (const pid of stopped) {
      try {
        process.kill(pid, 'SIGCONT');
      } catch {
        // gone
      }
    }
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    for (const h of hosts) {
      await cleanUp(h.dataDir, h.name);
      await h.sshd.stop();
    }
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function spec(on: readonly TestHost[], tolerate: number): string {
    const document: FleetDocument = {
      apiVersion: 'vfleet/v1',
      kind: 'Fleet',
      metadata: { name: `ctl-ssh-${suffix}` },
      spec: {
        // The VM's disk replicated to its failover host (docs/replication.md): its restarts boot
        // from the replica.
        failover:
          tolerate > 0
            ? { tolerate, replication: { interval: '2s', maxRpo: '60s' } }
            : { tolerate },
        hosts: on.map((h) =>
          aHost({
            name: h.name,
            engine: 'ssh',
            address: h.sshd.address,
            port: h.sshd.port,
            user: 'root',
            hostKey: h.sshd.hostKey,
            identityFile: h.sshd.clientKeyPath,
            dataDir: h.dataDir,
            cpu: { sockets: 1, coresPerSocket: 2, threadsPerCore: 1 },
            memoryMiB: 4096,
            diskGiB: 20,
            os: OS,
            runs: ['vm', 'container'],
            overcommit: { cpu: 8, memory: 1 },
          }),
        ) as FleetDocument['spec']['hosts'],
        images: [
          anImage({
            name: 'busybox',
            kind: 'container',
            os: OS,
            source: { rootfs: images.rootfs },
            command: SANDBOX_COMMAND as [string, ...string[]],
            packages: {},
          }),
          tinyVmImage(images, OS),
        ],
        instances: [
          aGroup({
            name: 'box',
            image: 'busybox',
            replicas: 1,
            resources: { vcpus: 1, memoryMiB: 64, diskGiB: 1 },
            failover: true,
          }),
          aGroup({
            name: 'vm',
            image: 'tiny-vm',
            replicas: 1,
            resources: { vcpus: 1, memoryMiB: 128, diskGiB: 1 },
            failover: { priority: 'high' },
          }),
        ],
      },
    };
    return toYaml(document);
  }

  /** vfleet without blocking this process (the sampler keeps running). */
  function run(args: string[]): Promise<VfleetRun> {
    return runVfleet(args, dir, env, DEADLINE_MS);
  }

  async function status(): Promise<StatusJson> {
    const r = await run(['status', '--json']);
    assert.ok(r.code === 0 || r.code === 2, r.stderr + r.stdout);
    return JSON.parse(r.stdout) as StatusJson;
  }

  async function events(): Promise<FleetEvent[]> {
    const r = await run(['events', '--json', '--last', '1000']);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as FleetEvent);
  }

  const byName = (name: string) => hosts.find((h) => h.name === name) as TestHost;
  const copiesOf = (instance: string) => copies(hosts).filter((c) => c.instance === instance);
  const agentPid = (h: TestHost, role: string) =>
    Number(readFileSync(`${h.dataDir}/agent/${role}.pid`, 'utf8'));

  function stop(pids: readonly number[]): void {
    for (const pid of pids) {
      process.kill(pid, 'SIGSTOP');
      stopped.push(pid);
    }
  }

  function resume(): void {
    for (const pid of stopped.splice(0)) {
      try {
        process.kill(pid, 'SIGCONT');
      } catch {
        // gone
      }
    }
  }

  let placed: StatusJson['instances'];

  it('applies a protected sandbox and a protected VM onto one host, reserved on the others', async () => {
    const [a] = hosts as [TestHost];
    // One host first (nothing to reserve), then the other two: the instances stay where they run.
    writeFileSync(`${dir}/fleet.yaml`, spec([a], 0));
    let r = await run(['apply', '--auto-approve']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    writeFileSync(`${dir}/fleet.yaml`, spec(hosts, 1));
    r = await run(['apply', '--auto-approve']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const s = await status();
    placed = s.instances;
    for (const name of ['box-0', 'vm-0']) {
      const i = s.instances.find((x) => x.instance === name);
      assert.equal(i?.host, a.name, JSON.stringify(s.instances));
      assert.equal(i?.status, 'running');
      assert.ok(i?.failoverHost && i.failoverHost !== a.name, 'a failover host is reserved');
      assert.equal(copiesOf(name).length, 1);
    }
  });

  it('starts the agent on every host and judges them ok', async () => {
    const controller = spawnVfleet(
      ['controller', '-f', 'fleet.yaml', '--lease-ttl', TTL, '--grace', '1s', '--interval', '5s'],
      dir,
      env,
      children,
    );
    await pollUntil(
      'every host has its agent and watchdog running',
      () =>
        hosts.every((h) =>
          ['agent', 'watchdog'].every((role) => {
            try {
              return existsSync(`/proc/${agentPid(h, role)}`);
            } catch {
              return false;
            }
          }),
        )
          ? true
          : undefined,
      DEADLINE_MS,
    );
    assert.equal(controller.child.exitCode, null, controller.output());
    sampler = setInterval(() => {
      samples++;
      const seen = new Map<string, Copy[]>();
      for (const c of copies(hosts)) seen.set(c.instance, [...(seen.get(c.instance) ?? []), c]);
      for (const [instance, list] of seen)
        if (list.length > 1)
          doubles.push(
            `${new Date().toISOString()} ${instance}: ${list.map((c) => `${c.host}/${c.pid}`).join(', ')}`,
          );
    }, 100);
  });

  /** Waits until vm-0's replica on its failover host is complete and current. */
  async function replicated(): Promise<void> {
    await pollUntil(
      "vm-0's disk replicated to its failover host",
      async () => {
        const vm = (await status()).instances.find((i) => i.instance === 'vm-0');
        return vm?.replication?.state === 'ok' && vm.replication.target === vm.failoverHost
          ? true
          : undefined;
      },
      DEADLINE_MS,
    );
  }

  /** The restart of vm-0 after `before` events booted from its replica. */
  async function restartedFromReplica(before: number): Promise<void> {
    const restarted = (await events())
      .slice(before)
      .filter((e) => e.type === 'restarted' && e.instance === 'vm-0') as Array<
      FleetEvent & { from_replica?: string; rpoSeconds?: number }
    >;
    assert.ok(restarted.length > 0, 'vm-0 restarted');
    const last = restarted[restarted.length - 1];
    assert.equal(typeof last?.from_replica, 'string', `from its replica: ${JSON.stringify(last)}`);
    assert.ok((last?.rpoSeconds ?? 99) <= 60, `data lost: ${last?.rpoSeconds} s`);
  }

  it('(a) partition: sshd and agent stopped — the watchdog kills, the failover hosts restart, the stale copies are destroyed on return', async (t) => {
    const t0 = Date.now();
    const mark = (what: string) =>
      t.diagnostic(`${what}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const victim = byName(placed.find((i) => i.instance === 'vm-0')?.host as string);
    const onVictim = placed.filter((i) => i.host === victim.name).map((i) => i.instance);
    assert.deepEqual(onVictim.sort(), ['box-0', 'vm-0']);
    await replicated();
    mark('vm-0 replicated');
    const eventsBefore = (await events()).length;
    stop([victim.sshd.pid, ...victim.sshd.sessionPids(), agentPid(victim, 'agent')]);
    await pollUntil(
      "the watchdog kills the partitioned host's instances",
      () => (copies([victim]).length === 0 ? true : undefined),
      DEADLINE_MS,
    );
    mark('the watchdog killed them');
    const restarted = await pollUntil(
      'both instances restarted on their failover hosts',
      async () => {
        const found = (await events()).filter((e) => e.type === 'restarted');
        return onVictim.every((n) => found.some((e) => e.instance === n)) ? found : undefined;
      },
      DEADLINE_MS,
    );
    await restartedFromReplica(eventsBefore);
    for (const name of onVictim) {
      const reserved = placed.find((i) => i.instance === name)?.failoverHost;
      const event = restarted.find((e) => e.instance === name);
      assert.equal(event?.host, reserved, `${name} restarts on the host reserved for it`);
      await pollUntil(`${name} runs on ${reserved}`, () => {
        const c = copiesOf(name);
        return c.length === 1 && c[0]?.host === reserved ? true : undefined;
      });
    }
    mark('both run on their failover hosts');
    const s = await status();
    mark('status answered');
    assert.equal(s.hosts.find((h) => h.name === victim.name)?.health, 'lost');
    for (const name of onVictim) {
      const i = s.instances.find((x) => x.instance === name);
      assert.notEqual(i?.host, victim.name);
      assert.equal(i?.status, 'running', JSON.stringify(i));
      assert.ok(s.hosts.find((h) => h.name === i?.host)?.running?.includes(name));
    }
    // The host comes back.
    resume();
    const back = await pollUntil(
      'the returning host reports its watchdog and destroys its stale copies',
      async () => {
        const all = await events();
        const fenced = all.find((e) => e.type === 'self-fenced' && e.host === victim.name);
        const destroyed = all.find(
          (e) => e.type === 'stale-copies-destroyed' && e.host === victim.name,
        );
        const ok = all.find((e) => e.type === 'host-ok' && e.host === victim.name);
        return fenced && destroyed && ok ? { fenced, destroyed } : undefined;
      },
      DEADLINE_MS,
    );
    mark('back, stale copies destroyed');
    assert.deepEqual([...(back.fenced.instances ?? [])].sort(), onVictim.sort());
    assert.deepEqual([...(back.destroyed.instances ?? [])].sort(), onVictim.sort());
    for (const name of onVictim)
      assert.equal(existsSync(`${victim.dataDir}/instances/${name}`), false);
    assert.deepEqual(doubles, [], 'never two copies of an instance');
  });

  it('(b) a host killed outright: the instances restart elsewhere, the host returns without them', async (t) => {
    const t0 = Date.now();
    const mark = (what: string) =>
      t.diagnostic(`${what}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    await replicated();
    mark('vm-0 replicated to its new failover host');
    const s = await status();
    const vm = s.instances.find((i) => i.instance === 'vm-0');
    const victim = byName(vm?.host as string);
    const onVictim = s.instances.filter((i) => i.host === victim.name);
    const before = (await events()).length;
    // The host dies: its sshd, its agent loops, every instance process on it.
    victim.sshd.crash();
    for (const pid of processesUsing(victim.dataDir)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    await pollUntil('nothing of the host runs', () =>
      copies([victim]).length === 0 ? true : undefined,
    );
    await pollUntil(
      'its instances restarted elsewhere at a newer generation',
      async () => {
        const found = (await events()).slice(before).filter((e) => e.type === 'restarted');
        return onVictim.every((i) =>
          found.some(
            (e) =>
              e.instance === i.instance &&
              e.host !== victim.name &&
              (e.generation ?? 0) > i.generation,
          ),
        )
          ? true
          : undefined;
      },
      DEADLINE_MS,
    );
    for (const i of onVictim)
      await pollUntil(`${i.instance} runs once, not on ${victim.name}`, () => {
        const c = copiesOf(i.instance);
        return c.length === 1 && c[0]?.host !== victim.name ? true : undefined;
      });
    mark('restarted elsewhere');
    await restartedFromReplica(before);
    // The host boots again: sshd first; the controller starts its agent and cleans up.
    await victim.sshd.revive();
    const back = async () => {
      const all = (await events()).slice(before);
      return {
        // The agent started again: reported by the host until the leader acknowledges it, so an
        // answer lost to the cycle's time limit (half a ttl, 1.5 s here; under load) still
        // makes the event at the next renewal.
        agentRestarted: all.some((e) => e.type === 'agent-restarted' && e.host === victim.name),
        hostOk: all.some((e) => e.type === 'host-ok' && e.host === victim.name),
        staleLeft: onVictim
          .filter((i) => existsSync(`${victim.dataDir}/instances/${i.instance}`))
          .map((i) => i.instance),
        last: all.slice(-8).map((e) => `${e.type} ${e.host ?? ''} ${e.instance ?? ''}`),
      };
    };
    await pollUntil(
      'the agent is started again and the stale copies destroyed',
      async () => {
        const b = await back();
        return b.agentRestarted && b.hostOk && b.staleLeft.length === 0 ? true : undefined;
      },
      DEADLINE_MS,
    ).catch(async (e) => {
      // Which of the three did not happen, for the reader of a failure.
      throw new Error(`${(e as Error).message}: ${JSON.stringify(await back())}`);
    });
    mark('back, stale copies destroyed');
    assert.deepEqual(doubles, [], 'never two copies of an instance');
  });

  it('(c) a clean stop of the only controller disarms the agents and leaves the instances running', async () => {
    clearInterval(sampler);
    assert.ok(samples > 100, `the process table was sampled (${samples} samples)`);
    const controller = children.find((c) => c.exitCode === null) as ChildProcess;
    const running = copies(hosts).length;
    const loops = hosts.flatMap((h) => ['agent', 'watchdog'].map((r) => agentPid(h, r)));
    const exited = new Promise((resolve) => controller.once('exit', resolve));
    controller.kill('SIGTERM');
    await exited;
    const disarmed = (await events()).filter((e) => e.type === 'agents-disarmed');
    assert.deepEqual(disarmed.at(-1)?.hosts, hosts.map((h) => h.name).sort());
    await pollUntil('every agent loop ends', () =>
      loops.every((p) => !existsSync(`/proc/${p}`) || procStat(p)?.state === 'Z')
        ? true
        : undefined,
    );
    assert.equal(copies(hosts).length, running, 'the instances keep running');
  });
});
