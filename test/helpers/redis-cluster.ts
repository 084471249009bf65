// A real Redis Cluster for one test file: `masters` redis-server processes with
// `--cluster-enabled yes` on loopback ports (and `replicasPerMaster` replicas each), joined with
// `redis-cli --cluster create … --cluster-yes`, waited for until every node says
// cluster_state:ok. Its own mkdtemp folder (the nodes.conf files); stopped by pid in an after()
// hook. `redis-cluster://` URLs for REDIS_URL. With replicas, ready once every replica is known
// as one and in sync with its master.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import { Cluster, Redis } from 'ioredis';
import { freePort, type RedisProcess, startOnFreePorts } from './redis-process.js';

const run = promisify(execFile);
const READY_TIMEOUT_MS = 60_000;

export interface TestRedisCluster {
  /** Every node, masters first (as created; a failover changes which is which). */
  readonly nodes: readonly RedisProcess[];
  readonly dir: string;
  /** `redis-cluster://[:password@]127.0.0.1:p1,127.0.0.1:p2,…`: every node a seed. */
  url(userInfo?: string): string;
  /** With `tls`: `rediss-cluster://…` on the nodes' TLS ports. */
  tlsUrl(userInfo?: string): string;
  /** A client on one node (by index), not cluster-aware: for CONFIG, DEBUG and the like. */
  node(index: number): Redis;
  /** A cluster client, for reading what vfleet wrote. */
  client(): Cluster;
  stop(): Promise<void>;
}

export interface TestRedisClusterOptions {
  readonly masters?: number;
  readonly replicasPerMaster?: number;
  readonly password?: string;
  /** Extra redis-server arguments for every node. */
  readonly args?: readonly string[];
  /**
   * TLS too: every node also listens on a TLS port with this certificate, and the nodes speak
   * TLS to each other (`tls-cluster`); the plain port stays, for the helper's own probes.
   */
  readonly tls?: { readonly cert: string; readonly key: string; readonly ca: string };
}

/**
 * With replicas: `node` knows every replica as one, and when it is one it is in sync with its
 * master (what `CLUSTER FAILOVER` asks for).
 */
async function replicasReady(node: Redis, expected: number): Promise<boolean> {
  if (expected === 0) return true;
  const known = String(await node.cluster('NODES').catch(() => ''));
  if ((known.match(/[ ,]slave[ ,]/g)?.length ?? 0) !== expected) return false;
  const replication = await node.info('replication').catch(() => '');
  return !/role:slave/.test(replication) || /master_link_status:up/.test(replication);
}

export async function startRedisCluster(
  options: TestRedisClusterOptions = {},
): Promise<TestRedisCluster> {
  const masters = options.masters ?? 3;
  const replicas = options.replicasPerMaster ?? 0;
  const dir = mkdtempSync(`${tmpdir()}/vfleet-test-cluster-`);
  const nodes: RedisProcess[] = [];
  const tlsPorts: number[] = [];
  const clients: Array<Redis | Cluster> = [];
  const auth = options.password
    ? ['--requirepass', options.password, '--masterauth', options.password]
    : [];
  const stop = async () => {
    await Promise.all(clients.map((c) => c.quit().catch(() => c.disconnect())));
    await Promise.all(nodes.map((n) => n.stop()));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < masters * (1 + replicas); i++) {
      let tlsPort: number | undefined; // the one of the attempt that started
      const node = await startOnFreePorts(async () => {
        const port = await freePort();
        // The bus port is chosen too: port + 10000 may be past 65535 for an ephemeral port.
        const busPort = await freePort();
        const tls = options.tls;
        const tlsArgs: string[] = [];
        if (tls) {
          tlsPort = await freePort();
          tlsArgs.push(
            '--tls-port',
            String(tlsPort),
            '--tls-cluster',
            'yes',
            '--tls-replication',
            'yes',
            '--tls-cert-file',
            tls.cert,
            '--tls-key-file',
            tls.key,
            '--tls-ca-cert-file',
            tls.ca,
            '--tls-auth-clients',
            'no',
          );
        }
        return {
          port,
          args: [
            '--port',
            String(port),
            '--bind',
            '127.0.0.1',
            '--cluster-enabled',
            'yes',
            '--cluster-port',
            String(busPort),
            '--cluster-config-file',
            `${dir}/nodes-${port}.conf`,
            '--cluster-node-timeout',
            '2000',
            '--dir',
            dir,
            '--save',
            '',
            '--appendonly',
            'no',
            '--maxmemory-policy',
            'noeviction',
            ...auth,
            ...tlsArgs,
            ...(options.args ?? []),
          ],
        };
      });
      nodes.push(node);
      if (tlsPort !== undefined) tlsPorts.push(tlsPort);
    }
    await run(
      'redis-cli',
      [
        '--cluster',
        'create',
        ...nodes.map((n) => `127.0.0.1:${n.port}`),
        '--cluster-replicas',
        String(replicas),
        '--cluster-yes',
      ],
      // REDISCLI_AUTH rather than -a: no password on a command line.
      {
        env: { ...process.env, ...(options.password ? { REDISCLI_AUTH: options.password } : {}) },
        timeout: 60_000,
      },
    );
    const probe = (port: number) => {
      const redis = new Redis({
        port,
        host: '127.0.0.1',
        password: options.password,
        lazyConnect: true,
        maxRetriesPerRequest: 1,
      });
      redis.on('error', () => undefined);
      return redis;
    };
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (const n of nodes) {
      const redis = probe(n.port);
      try {
        for (;;) {
          const info = await redis.cluster('INFO').catch(() => '');
          const known = /cluster_known_nodes:(\d+)/.exec(String(info))?.[1];
          if (
            /cluster_state:ok/.test(String(info)) &&
            Number(known) === nodes.length &&
            (await replicasReady(redis, masters * replicas))
          )
            break;
          if (Date.now() > deadline) throw new Error(`cluster node ${n.port} not ok: ${info}`);
          await delay(100);
        }
      } finally {
        redis.disconnect();
      }
    }
    return {
      nodes,
      dir,
      url: (userInfo = options.password ? `:${encodeURIComponent(options.password)}@` : '') =>
        `redis-cluster://${userInfo}${nodes.map((n) => `127.0.0.1:${n.port}`).join(',')}`,
      tlsUrl: (userInfo = options.password ? `:${encodeURIComponent(options.password)}@` : '') =>
        `rediss-cluster://${userInfo}${tlsPorts.map((p) => `127.0.0.1:${p}`).join(',')}`,
      node(index) {
        const n = nodes[index];
        if (!n) throw new Error(`no node ${index}`);
        const redis = new Redis({
          port: n.port,
          host: '127.0.0.1',
          password: options.password,
          maxRetriesPerRequest: 1,
        });
        redis.on('error', () => undefined);
        clients.push(redis);
        return redis;
      },
      client() {
        const cluster = new Cluster(
          nodes.map((n) => ({ host: '127.0.0.1', port: n.port })),
          { redisOptions: { password: options.password } },
        );
        cluster.on('error', () => undefined);
        clients.push(cluster);
        return cluster;
      },
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
