// A client that is closed while it waits between two reconnect attempts ends, and fails what it
// had queued (src/state/redis-clients.ts, `endsWhenDisconnected`): ioredis alone leaves it
// `reconnecting` for ever, and BullMQ closing a worker whose blocking connection was in that state
// waited for it for ever — an apply that stopped its workers just after Redis restarted hung.
// Against a real redis-server, stopped under the clients.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { Worker } from 'bullmq';
import { withErrorListener } from '../../src/queue/error-listener.js';
import { RedisClients } from '../../src/state/redis-clients.js';
import { startRedisServer } from '../helpers/redis.js';
import { pollUntil } from '../helpers/vfleet-cli.js';

/** `promise`, or a rejection naming `what` after `ms` (a bound for a loaded machine). */
async function within<T>(what: string, ms: number, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

describe('a client closed between two reconnect attempts', () => {
  it('ends at once and fails the commands it queued', async (t) => {
    const server = await startRedisServer();
    t.after(() => server.stop());
    // Never declared lost: the client keeps reconnecting until it is closed.
    const clients = new RedisClients(
      { path: server.socket },
      { shown: 'test', lostAfterMs: Infinity },
    );
    const client = clients.open();
    assert.equal(await client.ping(), 'PONG');
    await server.stop();
    await pollUntil(
      'the client between two attempts',
      () => (client.status === 'reconnecting' ? true : undefined),
      20_000,
      20,
    );
    const queued = client.get('some-key');
    queued.catch(() => undefined);
    const ended = once(client, 'end');
    client.disconnect();
    await within('the client ends', 5_000, ended);
    assert.equal(client.status, 'end');
    await assert.rejects(within('the queued command fails', 5_000, queued), /Connection is closed/);
  });

  it('lets a BullMQ worker close while its connections reconnect', async (t) => {
    const server = await startRedisServer();
    t.after(() => server.stop());
    const clients = new RedisClients(
      { path: server.socket },
      { shown: 'test', lostAfterMs: Infinity },
    );
    const connection = clients.open({ maxRetriesPerRequest: null });
    const worker = withErrorListener(
      new Worker('host.a', async () => 'done', { connection, prefix: 'vfleet:{t}' }),
    );
    await worker.waitUntilReady();
    // Its main loop is blocked on the server (BZPOPMIN on its own, copied connection).
    await pollUntil('the worker waiting for jobs', () => (worker.isRunning() ? true : undefined));
    await server.stop();
    await pollUntil(
      'the worker connection between two attempts',
      () => (connection.status === 'reconnecting' ? true : undefined),
      20_000,
      20,
    );
    await within('the worker closes', 10_000, worker.close());
    connection.disconnect();
    assert.equal(connection.status, 'end');
  });
});
