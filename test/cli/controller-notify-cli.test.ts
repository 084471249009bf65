// Notifications from `vfleet controller --notify URL`: a webhook receiver on loopback that checks
// every request's HMAC-SHA256 signature against the secret, answers 500 to the first delivery and
// 200 after, so the retry is seen; a host crashed on purpose must bring `host-lost` and
// `failover-done` notifications; the secret never appears in the controller's output, the
// fleet's events or the notification jobs in Redis.
import assert from 'node:assert/strict';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';
import { pollUntil, spawnVfleet, vfleet, workdir } from '../helpers/vfleet-cli.js';

const SECRET = `notify-secret-${process.pid}-x7q`;

interface Delivery {
  readonly id: string;
  readonly event: string;
  readonly body: Record<string, unknown>;
  readonly signed: boolean;
  readonly answered: number;
}

describe('vfleet controller --notify', () => {
  let server: TestRedisServer;
  let redis: Redis;
  let hook: Server;
  let url: string;
  const deliveries: Delivery[] = [];
  const children: Parameters<typeof spawnVfleet>[3] = [];

  before(async () => {
    server = await startRedisServer({ args: ['--maxmemory-policy', 'noeviction'], tcp: true });
    redis = server.client();
    let first = true;
    hook = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const raw = Buffer.concat(chunks);
        const expected = Buffer.from(
          `sha256=${createHmac('sha256', SECRET).update(raw).digest('hex')}`,
        );
        const given = Buffer.from(String(req.headers['x-vfleet-signature-256'] ?? ''));
        const signed = given.length === expected.length && timingSafeEqual(given, expected);
        const answered = first ? 500 : 200;
        first = false;
        deliveries.push({
          id: String(req.headers['x-vfleet-delivery']),
          event: String(req.headers['x-vfleet-event']),
          body: JSON.parse(raw.toString('utf8')) as Record<string, unknown>,
          signed,
          answered,
        });
        res.statusCode = answered;
        res.end();
      });
    });
    await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hook`;
  });

  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await new Promise((resolve) => hook?.close(resolve));
    await server?.stop();
  });

  it('delivers signed notifications of a lost host and its failover, retrying a 500', async () => {
    const cwd = workdir();
    const env = { REDIS_URL: `${server.url}/0`, VFLEET_NOTIFY_SECRET: SECRET };
    const controller = spawnVfleet(
      [
        'controller',
        '-f',
        'fleet.yaml',
        '--lease-ttl',
        '1s',
        '--interval',
        '2s',
        '--auto-apply',
        '--notify',
        url,
        '--notify-on',
        'host-lost,failover-done,sync-failed',
      ],
      cwd,
      env,
      children,
    );
    await pollUntil('the fleet applied', () => {
      const r = vfleet(['status', '--json'], cwd, { REDIS_URL: env.REDIS_URL });
      const s = r.code === 0 || r.code === 2 ? JSON.parse(r.stdout) : undefined;
      return s?.sync?.status === 'Synced' ? true : undefined;
    });
    assert.equal(vfleet(['host', 'fail', 'hv-r1-01'], cwd, { REDIS_URL: env.REDIS_URL }).code, 0);
    await pollUntil('host-lost and failover-done delivered', () => {
      const ok = deliveries.filter((d) => d.answered === 200);
      return ok.some((d) => d.event === 'host-lost') && ok.some((d) => d.event === 'failover-done')
        ? true
        : undefined;
    });
    assert.ok(
      deliveries.every((d) => d.signed),
      'every request carries the right signature',
    );
    const lost = deliveries.find((d) => d.event === 'host-lost' && d.answered === 200);
    assert.equal(lost?.body.host, 'hv-r1-01');
    assert.equal(lost?.body.event, 'host-lost');
    const failover = deliveries.find((d) => d.event === 'failover-done' && d.answered === 200);
    assert.equal(failover?.body.from, 'hv-r1-01');
    // the first delivery was answered 500 and came again with the same delivery id
    const firstId = deliveries[0]?.id;
    assert.equal(deliveries[0]?.answered, 500);
    assert.ok(
      deliveries.filter((d) => d.id === firstId).length >= 2,
      'the delivery answered 500 is retried',
    );
    // the secret is nowhere but in the two processes' memory
    controller.child.kill('SIGTERM');
    await controller.exited;
    assert.ok(!controller.output().includes(SECRET));
    const events = vfleet(['events', '--json', '--last', '1000'], cwd, {
      REDIS_URL: env.REDIS_URL,
    }).stdout;
    assert.ok(!events.includes(SECRET));
    for (const key of await redis.keys('*notify*')) {
      const type = await redis.type(key);
      const dump =
        type === 'hash'
          ? JSON.stringify(await redis.hgetall(key))
          : type === 'string'
            ? String(await redis.get(key))
            : '';
      assert.ok(!dump.includes(SECRET), `${key} holds no secret`);
    }
  });
});
