// Redis that answers but refuses writes, in the middle of an apply (issue 17, fault 3): a
// REDIS_URL server out of memory under noeviction (`CONFIG SET maxmemory` down to what it uses),
// and the private redis-server's disk full (its `.vfleet/` on a small tmpfs this test mounts,
// filled up: its AOF cannot be written, it answers MISCONF). Each time: one line on stderr naming
// the cause and the fix, a summary of what was done and what is unknown, exit 1, no stack trace,
// no password; and once memory is raised or space freed, the next apply converges — every
// instance of the spec on exactly one host.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { assertConverged, untilVersion } from '../helpers/fleet-faults.js';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';
import { spawnVfleet, vfleet, workdir } from '../helpers/vfleet-cli.js';

const PASSWORD = 'full-Canary/3d9+x';

/**
 * An apply through in-process workers, with slow boots so that the fault lands in its middle.
 * The jobs it holds when it stops keep their BullMQ locks until they expire: 5 s here (15 s by
 * default), which the next apply waits for ("waiting for N jobs an earlier apply left running").
 */
function slowApply(cwd: string, env: NodeJS.ProcessEnv, children: ChildProcess[]) {
  const apply = spawnVfleet(
    ['apply', '--auto-approve'],
    cwd,
    { ...env, VFLEET_EMBEDDED_BOOT_MS: '150', VFLEET_WORKER_LOCK_MS: '10000' },
    children,
  );
  let stderr = '';
  apply.child.stderr?.on('data', (d) => {
    stderr += d;
  });
  return { ...apply, stderr: () => stderr };
}

/** One line on stderr matching `cause`, the summary, exit 1, no stack trace. */
function assertStoppedInOneLine(
  code: number | null,
  output: string,
  stderr: string,
  cause: RegExp,
) {
  assert.equal(code, 1, output);
  assert.doesNotMatch(output, /\n\s+at |internal error/, 'no stack trace');
  const lines = stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line on stderr:\n${stderr.slice(0, 3000)}`);
  assert.match(lines[0] as string, cause);
  const summary =
    /Apply interrupted: (\d+) of 32 actions done, (\d+) failed or skipped, (\d+) not run or unknown \(in flight when Redis refused writes\)/.exec(
      output,
    );
  assert.ok(summary, output);
  assert.ok(Number(summary[3]) > 0, 'stopped midway');
  assert.match(output, /To resume, run vfleet apply again once Redis accepts writes/);
  return summary;
}

/**
 * An apply faulted by `fault` once under way: it stops in one line matching `cause`; after
 * `repair`, the next apply converges. What each printed, and how long the stop took.
 */
async function stopsThenResumes(o: {
  readonly cwd: string;
  readonly env: NodeJS.ProcessEnv;
  readonly redis: Redis;
  readonly children: ChildProcess[];
  readonly fault: () => Promise<unknown> | undefined;
  readonly cause: RegExp;
  readonly repair: () => Promise<unknown> | undefined;
}) {
  const apply = slowApply(o.cwd, o.env, o.children);
  await untilVersion(o.redis, 8);
  await o.fault();
  const faultAt = Date.now();
  const code = await apply.exited;
  const stoppedMs = Date.now() - faultAt;
  const summary = assertStoppedInOneLine(code, apply.output(), apply.stderr(), o.cause);
  await o.repair();
  const repairedAt = Date.now();
  const again = vfleet(['apply', '--auto-approve'], o.cwd, o.env);
  const againMs = Date.now() - repairedAt;
  assert.equal(again.code, 0, again.stdout + again.stderr);
  await assertConverged(o.redis, o.cwd, o.env);
  return {
    outputs: [apply.output(), again.stdout + again.stderr],
    said: `stopped ${stoppedMs} ms after: ${summary[1]} done, ${summary[3]} not run or unknown; the next apply converged in ${againMs} ms${/waiting for \d+ job/.test(again.stderr) ? ' (after waiting for the jobs the stopped apply left running)' : ''}`,
  };
}

/** Writes `file` until its filesystem has no byte left (tmpfs allocates by pages). */
function fillUp(file: string): void {
  const fd = openSync(file, 'w');
  try {
    for (const size of [1 << 16, 1 << 12, 1 << 9]) {
      const chunk = Buffer.alloc(size);
      try {
        for (;;) writeSync(fd, chunk);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
      }
    }
  } finally {
    closeSync(fd);
  }
}

describe('Redis refusing writes mid-apply', () => {
  const children: ChildProcess[] = [];
  const cleanup: Array<() => Promise<void> | void> = [];
  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    for (const c of cleanup.reverse()) await c();
  });

  it('out of memory under noeviction: one line naming it and the fix; converges once memory is raised', {
    timeout: 120_000,
  }, async (t) => {
    const server: TestRedisServer = await startRedisServer({
      tcp: true,
      args: ['--requirepass', PASSWORD, '--maxmemory-policy', 'noeviction'],
    });
    cleanup.push(() => server.stop());
    const cwd = workdir();
    cleanup.push(() => rmSync(cwd, { recursive: true, force: true }));
    const env = {
      REDIS_URL: server.url.replace('redis://', `redis://:${encodeURIComponent(PASSWORD)}@`),
    };
    const admin = server.client({ password: PASSWORD });
    const run = await stopsThenResumes({
      cwd,
      env,
      redis: admin,
      children,
      // Far below what it uses (which moves up and down): every write is refused from now on.
      fault: () => admin.config('SET', 'maxmemory', '1'),
      cause:
        /^vfleet: Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:\d+\/0 is out of memory and refuses writes \(OOM command not allowed .*\): raise maxmemory \(redis-cli CONFIG SET maxmemory <bytes>, and in redis\.conf\)/,
      repair: () => admin.config('SET', 'maxmemory', '0'),
    });
    for (const output of run.outputs) assert.ok(!output.includes(PASSWORD), 'no password');
    t.diagnostic(`maxmemory lowered: ${run.said}`);
  });

  it("the private redis-server's disk full: one line naming MISCONF and the fix; converges once space is freed", {
    timeout: 120_000,
  }, async (t) => {
    const cwd = workdir();
    const store = `${cwd}/.vfleet`;
    mkdirSync(store);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m,mode=0700', 'tmpfs', store]);
    const filler = `${store}/filler`;
    cleanup.push(() => {
      // Space first: a server whose AOF cannot be written does not shut down.
      rmSync(filler, { force: true });
      vfleet(['down'], cwd);
      execFileSync('umount', [store]);
      rmSync(cwd, { recursive: true, force: true });
    });
    assert.equal(vfleet(['status'], cwd).code, 0, 'starts the private redis-server');
    const redis = new Redis({ path: `${store}/redis/redis.sock`, maxRetriesPerRequest: 1 });
    redis.on('error', () => undefined);
    cleanup.push(() => redis.disconnect());
    const run = await stopsThenResumes({
      cwd,
      env: {},
      redis,
      children,
      fault: async () => fillUp(filler),
      cause:
        /^vfleet: Redis at unix:\/\/\S+redis\.sock refuses writes because it cannot persist them \(MISCONF .*No space left on device\): free space on the disk that holds \.vfleet\/redis, then run vfleet again/,
      repair: async () => rmSync(filler),
    });
    t.diagnostic(`the disk filled up: ${run.said}`);
  });
});
