// REDIS_URL values a server rejects after the connection is made, as a user meets them: the real
// launcher against a real redis-server with requirepass, a TCP server that is not Redis, and one
// that accepts and never answers. Each is one line on stderr, exit 1, no stack trace and no
// password; a database number past the server's `databases` is refused, not silently db 0.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { fromRoot } from '../helpers/paths.js';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';

const PASSWORD = 'canary-Pw-4f1c9a';
const bin = fromRoot('bin', 'vfleet.js');
let cwd: string;
let redis: TestRedisServer;
const fakes: Server[] = [];

function listen(onConnection: (socket: import('node:net').Socket) => void): Promise<number> {
  const server = createServer((socket) => {
    socket.on('error', () => undefined);
    onConnection(socket);
  });
  fakes.push(server);
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)),
  );
}

/** `vfleet status`, asynchronously: the fake servers answer from this process's event loop. */
function status(url: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [bin, 'status'],
      { cwd, encoding: 'utf8', timeout: 30_000, env: { ...process.env, REDIS_URL: url } },
      (_error, stdout, stderr) => resolve({ code: child.exitCode, stdout, stderr }),
    );
  });
}

before(async () => {
  cwd = mkdtempSync(`${tmpdir()}/vfleet-redis-url-`);
  writeFileSync(
    `${cwd}/fleet.yaml`,
    `apiVersion: vfleet/v1
kind: Fleet
metadata: { name: lab }
spec:
  hosts:
    - name: hv-01
      cpu: { sockets: 1, coresPerSocket: 4, threadsPerCore: 1 }
      memoryMiB: 4096
      diskGiB: 100
      os: { family: debian, release: "12", arch: x86_64 }
      runs: [container]
  images:
    - name: debian-12
      kind: container
      os: { family: debian, release: "12", arch: x86_64 }
  instances:
    - name: web
      image: debian-12
      replicas: 1
      resources: { vcpus: 1, memoryMiB: 64 }
`,
  );
  redis = await startRedisServer({ tcp: true, args: ['--requirepass', PASSWORD] });
});

after(async () => {
  await redis.stop();
  for (const server of fakes) server.close();
  rmSync(cwd, { recursive: true, force: true });
});

describe('REDIS_URL rejected after connecting', () => {
  const port = () => redis.url.split(':').at(-1);
  const withPassword = (password: string, rest = '') =>
    `redis://:${encodeURIComponent(password)}@127.0.0.1:${port()}${rest}`;

  const assertOneCleanLine = (run: Awaited<ReturnType<typeof status>>, reason: RegExp) => {
    assert.equal(run.code, 1, run.stdout + run.stderr);
    assert.equal(run.stdout, '');
    const lines = run.stderr.split('\n').filter(Boolean);
    assert.equal(lines.length, 1, run.stderr);
    assert.match(lines[0] as string, /^vfleet: cannot connect to Redis at redis:\/\//);
    assert.match(lines[0] as string, reason);
    assert.ok(!run.stderr.includes(PASSWORD), 'the password is not shown');
    assert.doesNotMatch(run.stderr, /\n\s+at |Please report this/);
  };

  it('the server is up and the right password works (the cases below fail for their reason)', async () => {
    const run = await status(withPassword(PASSWORD, '/3'));
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^Fleet lab \(state version 0, Redis redis:\/\/:\*\*\*@/);
  });

  it('a wrong password', async () => {
    assertOneCleanLine(
      await status(withPassword(`${PASSWORD}-old`)),
      /WRONGPASS.*check the user name/,
    );
  });

  it('no password where one is wanted', async () => {
    assertOneCleanLine(
      await status(`redis://127.0.0.1:${port()}`),
      /NOAUTH: the server wants a password and REDIS_URL has none/,
    );
  });

  it('a database number past the server’s databases is refused, not db 0', async () => {
    assertOneCleanLine(
      await status(withPassword(PASSWORD, '/99999')),
      /DB index is out of range \(REDIS_URL names database 99999\)$/,
    );
  });

  it('a port where something else answers', async () => {
    const other = await listen((socket) => socket.write('SSH-2.0-OpenSSH_9.2\r\n'));
    assertOneCleanLine(
      await status(`redis://:${PASSWORD}@127.0.0.1:${other}`),
      /the server does not speak the Redis protocol$/,
    );
  });

  it('a port that accepts and never answers', async () => {
    const silent = await listen(() => undefined);
    assertOneCleanLine(
      await status(`redis://:${PASSWORD}@127.0.0.1:${silent}`),
      /no Redis reply within 10 s$/,
    );
  });
});
