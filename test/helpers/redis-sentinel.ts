// A real Sentinel setup for one test file: a master and `replicas` replicas (redis-server on
// loopback ports) and `sentinels` Sentinels (`redis-server <conf> --sentinel`: Debian's
// redis-server runs as one without the redis-sentinel package), waited for until every
// Sentinel knows the master, its replicas and the other Sentinels. Its own mkdtemp folder (the
// Sentinels rewrite their config files there); stopped by pid in an after() hook.
// `redis-sentinel://` URLs for REDIS_URL.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { freePort, type RedisProcess, startOnFreePorts } from './redis-process.js';

const READY_TIMEOUT_MS = 60_000;
export const MASTER_NAME = 'vfleet-test';

export interface TestRedisSentinel {
  /** The data nodes: the first is the master at the start (a failover changes that). */
  readonly servers: readonly RedisProcess[];
  readonly sentinels: readonly RedisProcess[];
  readonly dir: string;
  /** `redis-sentinel://[:password@]127.0.0.1:s1,…/db#vfleet-test`. */
  url(options?: { readonly db?: number; readonly userInfo?: string }): string;
  /** With `tls`: `rediss-sentinel://…` on the Sentinels' TLS ports. */
  tlsUrl(options?: { readonly db?: number }): string;
  /** A plain client on one data node (by index). */
  server(index: number): Redis;
  /** A client on one Sentinel (by index): SENTINEL commands. */
  sentinel(index: number): Redis;
  /** The master's port as the Sentinels see it now. */
  masterPort(): Promise<number>;
  stop(): Promise<void>;
}

export interface TestRedisSentinelOptions {
  readonly replicas?: number;
  readonly sentinels?: number;
  readonly password?: string;
  /** Extra redis-server arguments for every data node. */
  readonly args?: readonly string[];
  /**
   * TLS too: every process also listens on a TLS port with this certificate; replicas replicate
   * and Sentinels watch over TLS. The plain ports stay, for the helper's own probes.
   */
  readonly tls?: { readonly cert: string; readonly key: string; readonly ca: string };
}

export async function startRedisSentinel(
  options: TestRedisSentinelOptions = {},
): Promise<TestRedisSentinel> {
  const dir = mkdtempSync(`${tmpdir()}/vfleet-test-sentinel-`);
  const servers: RedisProcess[] = [];
  const sentinels: RedisProcess[] = [];
  const clients: Redis[] = [];
  const password = options.password;
  const stop = async () => {
    await Promise.all(clients.map((c) => c.quit().catch(() => c.disconnect())));
    await Promise.all([...sentinels, ...servers].map((p) => p.stop()));
    rmSync(dir, { recursive: true, force: true });
  };
  const auth = password ? ['--requirepass', password, '--masterauth', password] : [];
  const client = (port: number, withPassword: boolean) => {
    const redis = new Redis({
      port,
      host: '127.0.0.1',
      ...(withPassword && password ? { password } : {}),
      maxRetriesPerRequest: 1,
    });
    redis.on('error', () => undefined);
    clients.push(redis);
    return redis;
  };
  const tls = options.tls;
  const tlsFiles = tls
    ? ['--tls-cert-file', tls.cert, '--tls-key-file', tls.key, '--tls-ca-cert-file', tls.ca]
    : [];
  const tlsPorts = new Map<number, number>(); // plain port → TLS port
  const tlsArgs = async (port: number) => {
    if (!tls) return [];
    const tlsPort = await freePort();
    tlsPorts.set(port, tlsPort);
    return [
      '--tls-port',
      String(tlsPort),
      '--tls-replication',
      'yes',
      '--tls-auth-clients',
      'no',
      ...tlsFiles,
    ];
  };
  try {
    const common = ['--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'];
    const master = await startOnFreePorts(async () => {
      const port = await freePort();
      return {
        port,
        args: [
          '--port',
          String(port),
          ...common,
          ...auth,
          ...(await tlsArgs(port)),
          ...(options.args ?? []),
        ],
      };
    });
    servers.push(master);
    // Replicas and Sentinels reach the master where it speaks TLS, when it does.
    const masterAt = tlsPorts.get(master.port) ?? master.port;
    for (let i = 0; i < (options.replicas ?? 1); i++) {
      servers.push(
        await startOnFreePorts(async () => {
          const port = await freePort();
          return {
            port,
            args: [
              '--port',
              String(port),
              ...common,
              '--replicaof',
              '127.0.0.1',
              String(masterAt),
              ...auth,
              ...(await tlsArgs(port)),
              ...(options.args ?? []),
            ],
          };
        }),
      );
    }
    const count = options.sentinels ?? 3;
    for (let i = 0; i < count; i++) {
      sentinels.push(
        await startOnFreePorts(async () => {
          const port = await freePort();
          const conf = `${dir}/sentinel-${port}.conf`;
          writeFileSync(
            conf,
            [
              `port ${port}`,
              'bind 127.0.0.1',
              `dir ${dir}`,
              `sentinel monitor ${MASTER_NAME} 127.0.0.1 ${masterAt} ${Math.floor(count / 2) + 1}`,
              ...(password ? [`sentinel auth-pass ${MASTER_NAME} ${password}`] : []),
              `sentinel down-after-milliseconds ${MASTER_NAME} 1000`,
              `sentinel failover-timeout ${MASTER_NAME} 10000`,
              `sentinel parallel-syncs ${MASTER_NAME} 1`,
              ...(tls
                ? [
                    `tls-port ${(await tlsArgs(port))[1]}`,
                    'tls-replication yes',
                    'tls-auth-clients no',
                    `tls-cert-file ${tls.cert}`,
                    `tls-key-file ${tls.key}`,
                    `tls-ca-cert-file ${tls.ca}`,
                  ]
                : []),
              '',
            ].join('\n'),
          );
          return { port, args: [conf, '--sentinel'] };
        }),
      );
    }
    // Every Sentinel knows the replicas and the other Sentinels (discovered through the master).
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (const s of sentinels) {
      const redis = client(s.port, false);
      for (;;) {
        const info = String(await redis.info('sentinel').catch(() => ''));
        const slaves = Number(/slaves=(\d+)/.exec(info)?.[1]);
        const known = Number(/sentinels=(\d+)/.exec(info)?.[1]);
        if (/status=ok/.test(info) && slaves === servers.length - 1 && known === count) break;
        if (Date.now() > deadline) throw new Error(`sentinel ${s.port} not ready: ${info}`);
        await delay(100);
      }
    }
    return {
      servers,
      sentinels,
      dir,
      url({ db = 0, userInfo = password ? `:${encodeURIComponent(password)}@` : '' } = {}) {
        return `redis-sentinel://${userInfo}${sentinels.map((s) => `127.0.0.1:${s.port}`).join(',')}/${db}#${MASTER_NAME}`;
      },
      tlsUrl({ db = 0 } = {}) {
        const userInfo = password ? `:${encodeURIComponent(password)}@` : '';
        const at = sentinels.map((x) => `127.0.0.1:${tlsPorts.get(x.port)}`).join(',');
        return `rediss-sentinel://${userInfo}${at}/${db}#${MASTER_NAME}`;
      },
      server: (index) => client((servers[index] as RedisProcess).port, true),
      sentinel: (index) => client((sentinels[index] as RedisProcess).port, false),
      async masterPort() {
        const redis = client((sentinels[0] as RedisProcess).port, false);
        const reply = (await redis.call(
          'SENTINEL',
          'GET-MASTER-ADDR-BY-NAME',
          MASTER_NAME,
        )) as string[];
        return Number(reply[1]);
      },
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
