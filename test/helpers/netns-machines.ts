// Many machines on one (docs/many-machines.md): each "machine" is a Linux network namespace with
// one address on a private bridge, and the bridge lives in a namespace of its own, the hub, where
// a redis-server listens. A process runs on a machine as `ip netns exec <ns> node bin/vfleet.js`
// and reaches Redis by address only (REDIS_URL=redis://:<password>@10.217.<subnet>.1:6379: a
// server reachable beyond loopback wants a password, as Redis's protected mode says); the test
// itself reads Redis over the server's unix socket, which no namespace separates. Nothing is
// routed anywhere else: the namespaces have no default route and no link to the machine's own
// network.
//
// Pulling a machine's cable (`cut`) sets the hub's end of its veth pair down: nothing it sends
// arrives, nothing is sent to it, and its TCP connections stay open, retransmitting, as across a
// real partition; `heal` sets it up again. In every namespace of ours TCP retransmits at least
// once a second (net.ipv4.tcp_rto_max_ms, per namespace since Linux 6.15, where it exists) and
// gives up on a connection only after about a minute (tcp_retries2), so a healed machine's
// connections carry on within a second instead of after the exponential backoff's minutes.
//
// Names carry the test process's pid (namespaces `vfleet-<pid>-<machine>`, links
// `vf<pid>-<machine>`), so files running side by side never collide; the subnet is the file's
// own. Teardown stops the processes it started by their pids, the server, then deletes exactly
// the namespaces it made (their links go with them) — also when the test process exits early.
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { after, afterEach, before } from 'node:test';
import type { Redis } from 'ioredis';
import { startRedisServer, type TestRedisServer } from './redis.js';
import { type RunningVfleet, spawnVfleet } from './vfleet-cli.js';

export interface NetnsMachinesOptions {
  /** The third byte of 10.217.<subnet>.0/24: a subnet this test file alone uses. */
  readonly subnet: number;
  /** The machines' names: lowercase letters and digits, at most 4 (a link's name is ≤ 15). */
  readonly machines: readonly string[];
  /** Extra redis-server arguments. */
  readonly redisArgs?: readonly string[];
}

export interface Machine {
  readonly name: string;
  readonly netns: string;
  readonly address: string;
  /** What runs a command on it: `ip netns exec <ns>`. */
  readonly exec: readonly string[];
}

export interface NetnsMachines {
  /** The redis-server in the hub (set by before()): `url` is its address on the bridge. */
  readonly redis: TestRedisServer;
  /** REDIS_URL for database `db`, with the server's password. */
  redisUrl(db: number): string;
  /** A client of database `db` on the server's unix socket (closed with the server). */
  client(db: number): Redis;
  /** Fails when the password appears in anything a process started here printed. */
  assertNoSecretShown(): void;
  machine(name: string): Machine;
  /** Starts `vfleet args` on a machine; stopped by its pid in teardown if still running. */
  vfleet(
    machine: string,
    args: readonly string[],
    cwd: string,
    env: NodeJS.ProcessEnv,
  ): RunningVfleet;
  /** Pulls the machine's cable: nothing goes in or out until heal() (or the test's end). */
  cut(machine: string): void;
  heal(machine: string): void;
  /** SIGTERM to what is still running, SIGKILL after `graceMs`; resolves when all are gone. */
  stopAll(graceMs?: number): Promise<void>;
}

/** The machines made and removed by hand (a benchmark); tests use useNetnsMachines. */
export interface OwnedNetnsMachines extends NetnsMachines {
  /** Makes the namespaces, the bridge, the links, and starts the redis-server in the hub. */
  start(): Promise<void>;
  /** Heals every cut cable and stops what still runs: a clean slate for the next test. */
  reset(): Promise<void>;
  /** Stops everything it started and deletes its namespaces. */
  close(): Promise<void>;
}

const REDIS_PORT = 6379;
const NAME = /^[a-z0-9]{1,4}$/;

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });

/** Sets a sysctl inside a namespace; false when this kernel has no such key. */
function sysctl(netns: string, key: string, value: string): boolean {
  const r = spawnSync('ip', ['netns', 'exec', netns, 'sysctl', '-q', '-w', `${key}=${value}`], {
    stdio: 'ignore',
  });
  return r.status === 0;
}

/** The hub, the bridge and the machines, made in before() and removed in after(). */
export function useNetnsMachines(options: NetnsMachinesOptions): NetnsMachines {
  const machines = createNetnsMachines(options);
  before(() => machines.start());
  // A test that failed half way leaves no machine cut off and nothing running for the next one.
  afterEach(() => machines.reset());
  after(() => machines.close());
  return machines;
}

/** The machines, made by start() and removed by close(). */
export function createNetnsMachines(options: NetnsMachinesOptions): OwnedNetnsMachines {
  for (const m of options.machines) {
    if (!NAME.test(m)) throw new Error(`machine name ${m}: [a-z0-9]{1,4}`);
  }
  const pid = process.pid;
  const net = `10.217.${options.subnet}`;
  const hub = `vfleet-${pid}-hub`;
  const machines = new Map<string, Machine>(
    options.machines.map((name, i) => {
      const netns = `vfleet-${pid}-${name}`;
      return [
        name,
        { name, netns, address: `${net}.${10 + i}`, exec: ['ip', 'netns', 'exec', netns] },
      ];
    }),
  );
  const namespaces = [hub, ...[...machines.values()].map((m) => m.netns)];
  const linkOf = (name: string) => `vf${pid}-${name}`;
  const cutOff = new Set<string>();
  const children: ChildProcess[] = [];
  const started: RunningVfleet[] = [];
  // A canary: random, so that finding it in an output can only mean it was printed.
  const password = `netns-${randomBytes(12).toString('hex')}`;
  let redis: TestRedisServer | undefined;

  /** Deletes our namespaces (ours by name: the pid); a link goes with its namespace. */
  const removeNamespaces = () => {
    for (const ns of namespaces) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  };
  const killChildren = (signal: NodeJS.Signals) => {
    for (const c of children) {
      if (c.exitCode === null && c.signalCode === null && c.pid !== undefined) {
        try {
          process.kill(c.pid, signal);
        } catch {
          // gone between the check and the signal
        }
      }
    }
  };
  // A test process that dies without its after() hooks (an uncaught error) still cleans up.
  const onExit = () => {
    killChildren('SIGKILL');
    if (redis) spawnSync('kill', ['-KILL', String(redis.pid)], { stdio: 'ignore' });
    removeNamespaces();
  };

  const machineOf = (name: string): Machine => {
    const m = machines.get(name);
    if (!m) throw new Error(`no machine ${name}`);
    return m;
  };

  const self: OwnedNetnsMachines = {
    get redis() {
      if (!redis) throw new Error('the hub has no redis-server yet (before() has not run)');
      return redis;
    },
    redisUrl(db) {
      return `redis://:${password}@${net}.1:${REDIS_PORT}/${db}`;
    },
    client(db) {
      return self.redis.client({ password, db });
    },
    assertNoSecretShown() {
      for (const p of started) {
        assert.ok(!p.output().includes(password), `a process printed the password: ${p.output()}`);
      }
    },
    machine: machineOf,
    vfleet(machine, args, cwd, env) {
      const p = spawnVfleet(args, cwd, env, children, machineOf(machine).exec);
      started.push(p);
      return p;
    },
    cut(machine) {
      machineOf(machine);
      ip('-n', hub, 'link', 'set', linkOf(machine), 'down');
      cutOff.add(machine);
    },
    heal(machine) {
      machineOf(machine);
      ip('-n', hub, 'link', 'set', linkOf(machine), 'up');
      cutOff.delete(machine);
    },
    async stopAll(graceMs = 10_000) {
      const running = children.filter((c) => c.exitCode === null && c.signalCode === null);
      const gone = running.map((c) => new Promise((resolve) => c.once('exit', resolve)));
      killChildren('SIGTERM');
      const timer = setTimeout(() => killChildren('SIGKILL'), graceMs);
      await Promise.all(gone);
      clearTimeout(timer);
    },
    async start() {
      process.once('exit', onExit);
      // A namespace of ours left by an earlier process with this pid (killed before its teardown).
      removeNamespaces();
      for (const ns of namespaces) ip('netns', 'add', ns);
      for (const ns of namespaces) {
        ip('-n', ns, 'link', 'set', 'lo', 'up');
        sysctl(ns, 'net.ipv4.tcp_rto_max_ms', '1000');
        sysctl(ns, 'net.ipv4.tcp_retries2', '60');
      }
      ip('-n', hub, 'link', 'add', 'br0', 'type', 'bridge');
      ip('-n', hub, 'addr', 'add', `${net}.1/24`, 'dev', 'br0');
      ip('-n', hub, 'link', 'set', 'br0', 'up');
      for (const m of machines.values()) {
        const link = linkOf(m.name);
        ip(
          '-n',
          hub,
          'link',
          'add',
          link,
          'type',
          'veth',
          'peer',
          'name',
          'eth0',
          'netns',
          m.netns,
        );
        ip('-n', hub, 'link', 'set', link, 'master', 'br0', 'up');
        ip('-n', m.netns, 'addr', 'add', `${m.address}/24`, 'dev', 'eth0');
        ip('-n', m.netns, 'link', 'set', 'eth0', 'up');
      }
      redis = await startRedisServer({
        args: [
          '--maxmemory-policy',
          'noeviction',
          '--requirepass',
          password,
          ...(options.redisArgs ?? []),
        ],
        netns: { name: hub, address: `${net}.1`, port: REDIS_PORT },
      });
    },
    async reset() {
      for (const m of [...cutOff]) self.heal(m);
      await self.stopAll(5_000);
    },
    async close() {
      await self.stopAll(5_000);
      await redis?.stop();
      removeNamespaces();
      process.removeListener('exit', onExit);
    },
  };

  return self;
}

/** The name a vfleet process's BullMQ workers put on the jobs they take (queue/host-worker.ts). */
export const workerNameOf = (child: ChildProcess): string => `${hostname()}:${child.pid}`;
