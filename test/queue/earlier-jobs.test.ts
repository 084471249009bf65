// What an earlier apply left running must stop acting before the next apply reads the hosts:
// waitForEarlierJobs against real BullMQ workers on a real redis-server — a live worker's job is
// waited for, a killed worker's job holds the wait only until its lock expires, and a job that
// never ends is given up on at the deadline.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { liveActiveJobs, waitForEarlierJobs } from '../../src/queue/earlier-jobs.js';
import { repoRoot } from '../helpers/paths.js';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';

describe('waitForEarlierJobs', () => {
  let server: TestRedisServer;
  let redis: Redis;
  const clients: Redis[] = [];
  const client = () => {
    const c = new Redis({ path: server.socket, maxRetriesPerRequest: null });
    clients.push(c);
    return c;
  };
  let n = 0;
  before(async () => {
    server = await startRedisServer({ args: ['--maxmemory-policy', 'noeviction'] });
    redis = client();
  });
  after(async () => {
    for (const c of clients) c.disconnect();
    await server.stop();
  });

  const until = async (condition: () => Promise<boolean>, what: string) => {
    const deadline = Date.now() + 20_000;
    while (!(await condition())) {
      assert.ok(Date.now() < deadline, what);
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  it('does not wait for the fleet’s other queues: a replication sync or a notification in flight', async () => {
    const prefix = `t${n++}`;
    const queues = ['replication', 'notify'].map(
      (name) => new Queue(name, { connection: client(), prefix }),
    );
    const releases: Array<() => void> = [];
    const workers = ['replication', 'notify'].map(
      (name) =>
        new Worker(
          name,
          () =>
            new Promise<void>((r) => {
              releases.push(r);
            }),
          { connection: client(), prefix },
        ),
    );
    try {
      for (const q of queues) await q.add('job', {});
      await until(async () => releases.length === 2, 'both jobs active on live workers');
      assert.deepEqual(await liveActiveJobs(redis, prefix), []);
    } finally {
      for (const r of releases) r();
      for (const w of workers) await w.close();
      for (const q of queues) await q.close();
    }
  });

  it('waits for a job running on a live worker, and resolves once it finished', async () => {
    const prefix = `t${n++}`;
    const queue = new Queue('host.h1', { connection: client(), prefix });
    let release: () => void = () => undefined;
    let finishedAt = 0;
    const worker = new Worker(
      'host.h1',
      async () => {
        await new Promise<void>((r) => {
          release = r;
        });
        finishedAt = Date.now();
      },
      { connection: client(), prefix },
    );
    try {
      await queue.add('create', {}, { jobId: 'old.web-0.create' });
      await until(async () => (await liveActiveJobs(redis, prefix)).length === 1, 'job active');
      assert.deepEqual(await liveActiveJobs(redis, prefix), ['host.h1/old.web-0.create']);
      const told: string[][] = [];
      const waited = waitForEarlierJobs(redis, prefix, {
        deadlineMs: 20_000,
        pollMs: 20,
        onWaiting: (jobs) => told.push([...jobs]),
      });
      await until(async () => told.length === 1, 'told what it waits for');
      release();
      assert.equal(await waited, true);
      assert.ok(finishedAt > 0 && finishedAt <= Date.now(), 'the job had finished first');
      assert.deepEqual(told, [['host.h1/old.web-0.create']]);
    } finally {
      await worker.close();
      await queue.close();
    }
  });

  it("does not wait on a killed worker's job beyond its lock", async () => {
    const prefix = `t${n++}`;
    const queue = new Queue('host.h1', { connection: client(), prefix });
    try {
      await queue.add('create', {}, { jobId: 'old.web-0.create' });
      // A worker in its own process, killed with SIGKILL while it holds the job.
      const code = `
        import { Worker } from 'bullmq';
        import { Redis } from 'ioredis';
        new Worker('host.h1', () => new Promise(() => { process.stdout.write('took\\n'); }), {
          connection: new Redis({ path: ${JSON.stringify(server.socket)}, maxRetriesPerRequest: null }),
          prefix: ${JSON.stringify(prefix)}, lockDuration: 1000, stalledInterval: 500,
        });`;
      const child = spawn(process.execPath, ['--input-type=module', '-e', code], {
        cwd: repoRoot,
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      await new Promise<void>((resolve) => child.stdout?.once('data', () => resolve()));
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('exit', resolve));
      assert.equal((await liveActiveJobs(redis, prefix)).length, 1, 'its lock outlives it');
      assert.equal(
        await waitForEarlierJobs(redis, prefix, { deadlineMs: 20_000, pollMs: 20 }),
        true,
      );
      // Still in the active list (nobody moved it back), but no longer holding anyone up.
      assert.deepEqual(await redis.lrange(`${prefix}:host.h1:active`, 0, -1), ['old.web-0.create']);
    } finally {
      await queue.close();
    }
  });

  it('gives up at the deadline on a job that does not end', async () => {
    const prefix = `t${n++}`;
    const queue = new Queue('host.h1', { connection: client(), prefix });
    const worker = new Worker('host.h1', () => new Promise(() => undefined), {
      connection: client(),
      prefix,
    });
    try {
      await queue.add('create', {}, { jobId: 'old.web-0.create' });
      await until(async () => (await liveActiveJobs(redis, prefix)).length === 1, 'job active');
      assert.equal(await waitForEarlierJobs(redis, prefix, { deadlineMs: 200, pollMs: 20 }), false);
    } finally {
      await worker.close(true);
      await queue.close();
    }
  });
});
