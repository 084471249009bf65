// The ssh transport against a real OpenSSH sshd (test/helpers/sshd.ts): the shared contract, then
// what only ssh has: host key pinning, authentication, the channel bound on one connection,
// reconnecting after a drop, secrets kept out of errors.
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import ssh2 from 'ssh2';
import { isVfleetError, type VfleetError } from '../../src/model/errors.js';
import { SshTransport } from '../../src/transport/ssh-transport.js';
import { keygen, startSshd, type TestSshd } from '../helpers/sshd.js';
import { eventually, transportContract } from './contract.js';

transportContract('ssh', async () => {
  const [one, two] = await Promise.all([
    startSshd({ address: '127.0.0.51' }),
    startSshd({ address: '127.0.0.52' }),
  ]);
  const dir = mkdtempSync(`${tmpdir()}/vfleet-test-ssh-`);
  const a = new SshTransport(one.host('ssh-a'));
  const b = new SshTransport(two.host('ssh-b'));
  return {
    a,
    b,
    dir,
    async close() {
      await Promise.all([a.close(), b.close()]);
      await Promise.all([one.stop(), two.stop()]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

async function failure(promise: Promise<unknown>): Promise<VfleetError> {
  try {
    await promise;
  } catch (e) {
    assert.ok(isVfleetError(e), `expected a VfleetError, got ${e}`);
    return e;
  }
  assert.fail('expected a rejection');
}

/** The lines of the sshd log about authentication: any of them means a client tried. */
const authLines = (sshd: TestSshd) =>
  sshd
    .log()
    .split('\n')
    .filter((line) => /publickey|Postponed|Accepted|Failed|authenticat/i.test(line));

/** Running here (the test hosts are this machine); a zombie is not. */
const running = (pid: string) => {
  const state = spawnSync('ps', ['-o', 'stat=', '-p', pid], { encoding: 'utf8' }).stdout.trim();
  return state !== '' && !state.startsWith('Z');
};

/** The pid a command wrote with `echo $$ > file`, once the line is whole (the file exists empty first). */
async function pidIn(file: string): Promise<string> {
  let text = '';
  await eventually(async () => {
    text = existsSync(file) ? readFileSync(file, 'utf8') : '';
    return /^\d+\n$/.test(text);
  }, `a pid in ${file}`);
  return text.trim();
}

/** Sends a signal to a process that may have exited meanwhile (cleanup). */
const signal = (pid: number, name: NodeJS.Signals) => {
  try {
    process.kill(pid, name);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
  }
};

const accepted = (sshd: TestSshd) =>
  sshd
    .log()
    .split('\n')
    .filter((line) => line.startsWith('Accepted publickey')).length;

describe('ssh transport: the pinned host key', () => {
  let sshd: TestSshd;
  let scratch: string;
  before(async () => {
    sshd = await startSshd({ address: '127.0.0.53' });
    scratch = mkdtempSync(`${tmpdir()}/vfleet-test-pin-`);
  });
  after(async () => {
    await sshd?.stop();
    rmSync(scratch, { recursive: true, force: true });
  });

  const refuses = async (hostKey: string, presentedShouldBe: string, expected: string) => {
    const canary = `${scratch}/canary-${Math.random().toString(36).slice(2)}`;
    const transport = new SshTransport(sshd.host('pinned', { hostKey }));
    const e = await failure(transport.exec(['touch', canary]));
    await transport.close();
    assert.equal(e.code, 'host-key-mismatch');
    assert.equal(e.retryable, false);
    assert.match(e.message, /pinned/);
    assert.ok(e.message.includes(`${sshd.address}:${sshd.port}`), e.message);
    assert.ok(e.message.includes(presentedShouldBe), `presented fingerprint in: ${e.message}`);
    assert.ok(e.message.includes(expected), `expected fingerprint in: ${e.message}`);
    assert.equal(existsSync(canary), false, 'no command ran');
  };

  it('refuses a different key, before authenticating: nothing reaches sshd', async () => {
    const other = keygen(`${scratch}/other`);
    await refuses(other.publicLine, sshd.hostKeyFingerprint, other.fingerprint);
    // The handshake ended at key exchange: sshd saw no authentication attempt at all.
    assert.deepEqual(authLines(sshd), []);
  });

  it('refuses a wrong fingerprint the same way', async () => {
    const wrong = `SHA256:${createHash('sha256').update('not the key').digest('base64').replace(/=+$/, '')}`;
    await refuses(wrong, sshd.hostKeyFingerprint, wrong);
    assert.deepEqual(authLines(sshd), []);
  });

  it('refuses a pinned key of a kind the host does not have', async () => {
    execFileSync('ssh-keygen', ['-q', '-t', 'ecdsa', '-N', '', '-C', '', '-f', `${scratch}/ecdsa`]);
    const line = readFileSync(`${scratch}/ecdsa.pub`, 'utf8').split(' ').slice(0, 2).join(' ');
    const transport = new SshTransport(sshd.host('pinned', { hostKey: line }));
    const e = await failure(transport.exec(['true']));
    assert.equal(e.code, 'host-key-mismatch');
    assert.equal(e.retryable, false);
    assert.deepEqual(authLines(sshd), []);
  });

  it('accepts the pinned key, as a key line or as its fingerprint', async () => {
    for (const hostKey of [sshd.hostKey, sshd.hostKeyFingerprint]) {
      const transport = new SshTransport(sshd.host('pinned', { hostKey }));
      assert.equal((await transport.exec(['echo', 'in'])).stdout.toString(), 'in\n');
      await transport.close();
    }
  });
});

describe('ssh transport: identities and failures to connect', () => {
  let sshd: TestSshd;
  let scratch: string;
  before(async () => {
    sshd = await startSshd({ address: '127.0.0.54' });
    scratch = mkdtempSync(`${tmpdir()}/vfleet-test-identity-`);
  });
  after(async () => {
    await sshd?.stop();
    rmSync(scratch, { recursive: true, force: true });
  });

  /** Every line of a private key file but its armour: none may appear in an error. */
  const keyText = (path: string) =>
    readFileSync(path, 'utf8')
      .split('\n')
      .filter((line) => line.length > 20 && !line.startsWith('-----'));

  const assertNoSecret = (e: VfleetError, secrets: readonly string[]) => {
    const everything = `${e.message}\n${e.stack}\n${JSON.stringify(e)}\n${String(e.cause)}`;
    for (const secret of secrets) assert.ok(!everything.includes(secret), 'a secret leaked');
  };

  it('names an unreadable identity file by its path', async () => {
    const path = `${scratch}/does-not-exist`;
    const transport = new SshTransport(sshd.host('id', { identityFile: path }));
    const e = await failure(transport.exec(['true']));
    assert.equal(e.code, 'identity-unreadable');
    assert.ok(e.message.includes(path));
  });

  it('refuses an identity file that is a FIFO or /dev/zero at once, instead of waiting or filling memory', {
    timeout: 20_000,
  }, async () => {
    const fifo = `${scratch}/identity.fifo`;
    execFileSync('mkfifo', [fifo]);
    for (const [path, kind] of [
      [fifo, 'a FIFO \\(named pipe\\)'],
      ['/dev/zero', 'a character device'],
    ] as const) {
      const transport = new SshTransport(sshd.host('id', { identityFile: path }));
      const e = await failure(transport.exec(['true']));
      assert.equal(e.code, 'identity-unreadable');
      assert.match(
        e.message,
        new RegExp(`cannot read identityFile ${path}: it is ${kind}, not a regular file$`),
      );
    }
  });

  it('refuses an encrypted, a broken or a public key file without quoting it', async () => {
    const encrypted = `${scratch}/encrypted`;
    const passphrase = 'correct horse battery staple';
    execFileSync('ssh-keygen', [
      '-q',
      '-t',
      'ed25519',
      '-N',
      passphrase,
      '-C',
      '',
      '-f',
      encrypted,
    ]);
    const broken = `${scratch}/broken`;
    const whole = readFileSync(sshd.clientKeyPath, 'utf8');
    writeFileSync(broken, whole.slice(0, whole.length - 60));
    for (const path of [encrypted, broken, `${sshd.clientKeyPath}.pub`]) {
      const transport = new SshTransport(sshd.host('id', { identityFile: path }));
      const e = await failure(transport.exec(['true']));
      assert.equal(e.code, 'identity-unreadable', e.message);
      assert.ok(e.message.includes(path));
      assertNoSecret(e, [...keyText(path), passphrase, ...keyText(sshd.clientKeyPath)]);
    }
  });

  it('reports a key the host does not accept as ssh-auth-failed naming user@host', async () => {
    const stranger = `${scratch}/stranger`;
    keygen(stranger);
    const transport = new SshTransport(sshd.host('id', { identityFile: stranger }));
    const e = await failure(transport.exec(['true']));
    assert.equal(e.code, 'ssh-auth-failed');
    assert.equal(e.retryable, false);
    assert.ok(e.message.includes(`root@${sshd.address}:${sshd.port}`), e.message);
    assertNoSecret(e, keyText(stranger));
  });

  it('uses the ssh-agent when there is no identity file', async () => {
    const socket = `${scratch}/agent.sock`;
    const agent = spawn('ssh-agent', ['-D', '-a', socket], { stdio: 'ignore' });
    const saved = process.env.SSH_AUTH_SOCK;
    try {
      await eventually(async () => existsSync(socket), 'the agent socket');
      execFileSync('ssh-add', ['-q', sshd.clientKeyPath], { env: { SSH_AUTH_SOCK: socket } });
      process.env.SSH_AUTH_SOCK = socket;
      const transport = new SshTransport(sshd.host('agent', { identityFile: undefined }));
      assert.equal((await transport.exec(['echo', 'agent'])).stdout.toString(), 'agent\n');
      await transport.close();
      delete process.env.SSH_AUTH_SOCK;
      const without = new SshTransport(sshd.host('agent', { identityFile: undefined }));
      assert.equal((await failure(without.exec(['true']))).code, 'ssh-agent-unavailable');
    } finally {
      if (saved === undefined) delete process.env.SSH_AUTH_SOCK;
      else process.env.SSH_AUTH_SOCK = saved;
      agent.kill();
    }
  });

  it('reports a refused connection as retryable host-unreachable with address:port', async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.54', resolve));
    const port = (server.address() as { port: number }).port;
    await new Promise((resolve) => server.close(resolve));
    const transport = new SshTransport(sshd.host('gone', { port }));
    const e = await failure(transport.exec(['true']));
    assert.equal(e.code, 'host-unreachable');
    assert.equal(e.retryable, true);
    assert.ok(e.message.includes(`127.0.0.54:${port}`), e.message);
  });

  it('gives up on a server that never speaks after readyTimeout', async () => {
    const sockets: Socket[] = [];
    const silent: Server = createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.54', resolve));
    const port = (silent.address() as { port: number }).port;
    try {
      const transport = new SshTransport(sshd.host('silent', { port }), { readyTimeoutMs: 300 });
      const e = await failure(transport.exec(['true']));
      assert.equal(e.code, 'host-unreachable');
      assert.equal(e.retryable, true);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });
});

describe('ssh transport: one connection, bounded channels, drops', () => {
  let sshd: TestSshd;
  let scratch: string;
  before(async () => {
    sshd = await startSshd({ address: '127.0.0.55' });
    scratch = mkdtempSync(`${tmpdir()}/vfleet-test-conn-`);
  });
  after(async () => {
    await sshd?.stop();
    rmSync(scratch, { recursive: true, force: true });
  });

  it("connects to a port of the host's 127.0.0.1 (a VM guest's sshd), and says so when none listens", async () => {
    const transport = new SshTransport(sshd.host('loopback'));
    // An echo server on this machine's 127.0.0.1, which is the sshd host's too.
    const echo: Server = createServer((socket) => socket.pipe(socket));
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    const port = (echo.address() as { port: number }).port;
    try {
      const stream = await transport.connectLoopbackPort(port);
      const answer = new Promise<string>((resolve) =>
        stream.once('data', (d) => resolve(String(d))),
      );
      stream.write('through sshd');
      assert.equal(await answer, 'through sshd');
      stream.destroy();
    } finally {
      await new Promise((resolve) => echo.close(resolve));
    }
    await assert.rejects(transport.connectLoopbackPort(port), (e) =>
      /cannot connect to 127\.0\.0\.1:\d+/.test((e as Error).message),
    );
    await transport.close();
  });

  it('runs 40 commands at once over one connection, never more channels than allowed', async () => {
    const transport = new SshTransport(sshd.host('busy'));
    const before = accepted(sshd);
    mkdirSync(`${scratch}/running`);
    // Each command counts the commands running beside it (itself included) while it runs.
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        transport.exec([
          'sh',
          '-c',
          `mkdir "$0/$1" && ls "$0" | wc -l && sleep 0.1 && rmdir "$0/$1" && echo "$1"`,
          `${scratch}/running`,
          `c${i}`,
        ]),
      ),
    );
    await transport.close();
    assert.ok(results.every((r, i) => r.code === 0 && r.stdout.toString().endsWith(`c${i}\n`)));
    const peak = Math.max(...results.map((r) => Number(r.stdout.toString().split('\n')[0])));
    assert.ok(peak <= 8, `at most maxSessions - 2 commands at once, saw ${peak}`);
    assert.ok(peak >= 2, `commands did run side by side, saw ${peak}`);
    assert.equal(accepted(sshd) - before, 1, 'one connection');
  });

  it('keeps a smaller bound given to the constructor, and times out a queued command', async () => {
    const transport = new SshTransport(sshd.host('narrow'), { maxSessions: 3 });
    // The SFTP session holds its own channel: it does not take the one command slot left.
    await transport.writeFile(`${scratch}/narrow`, 'x');
    const busy = transport.exec(['sleep', '0.5']);
    const canary = `${scratch}/queued-canary`;
    const e = await failure(transport.exec(['touch', canary], { timeoutMs: 100 }));
    assert.equal(e.code, 'command-timeout');
    assert.equal((await busy).code, 0);
    assert.equal(existsSync(canary), false, 'the queued command never ran');
    assert.equal((await transport.exec(['cat', `${scratch}/narrow`])).stdout.toString(), 'x');
    await transport.close();
  });

  it('runs each command as its own process group leader (what the kill relies on)', async () => {
    const transport = new SshTransport(sshd.host('groups'));
    const out = (await transport.exec(['sh', '-c', 'echo $$ $(ps -o pgid= -p $$)'])).stdout;
    const [pid, pgid] = out.toString().trim().split(/\s+/);
    assert.equal(pid, pgid);
    await transport.close();
  });

  it('reconnects after a drop; a command in flight fails retryable and is then killed', async () => {
    const transport = new SshTransport(sshd.host('drop'));
    const before = accepted(sshd);
    assert.equal((await transport.exec(['true'])).code, 0);
    const pidFile = `${scratch}/inflight.pid`;
    const inFlight = transport.exec(['sh', '-c', `echo $$ > '${pidFile}'; exec sleep 30`]);
    inFlight.catch(() => undefined);
    const pid = await pidIn(pidFile);

    sshd.dropConnections();
    // Issued at once, before the transport may have seen the drop: it still gets through.
    const next = await transport.exec(['echo', 'again']);
    assert.equal(next.stdout.toString(), 'again\n');

    const e = await failure(inFlight);
    assert.equal(e.code, 'connection-lost');
    assert.equal(e.retryable, true);
    assert.equal(accepted(sshd) - before, 2, 'a second connection');
    // sshd leaves a dropped session's processes running; the transport killed them on reconnect.
    await eventually(async () => !running(pid), `orphan ${pid} killed`).catch((error) => {
      spawnSync('kill', ['-KILL', pid]);
      throw error;
    });
    await transport.close();
  });

  it('drops a connection whose peer stopped answering keepalives, then reconnects', async () => {
    const transport = new SshTransport(sshd.host('stall'), {
      keepaliveIntervalMs: 150,
      keepaliveCountMax: 2,
    });
    assert.equal((await transport.exec(['true'])).code, 0);
    const pidFile = `${scratch}/stall.pid`;
    const inFlight = transport.exec(['sh', '-c', `echo $$ > '${pidFile}'; exec sleep 30`]);
    inFlight.catch(() => undefined);
    const pid = await pidIn(pidFile);
    // The session serving this connection freezes: the TCP connection stays up, nothing
    // answers on it. Its processes are the command's ancestors, alive while the command runs;
    // every child of the listener would also name sessions of closed transports, which may
    // exit between the listing and the signal (kill ESRCH on a loaded machine).
    const frozen = sshd.sessionOf(Number(pid));
    assert.ok(frozen.length > 0, 'the command runs in an sshd session');
    for (const session of frozen) process.kill(session, 'SIGSTOP');
    try {
      const e = await failure(inFlight);
      assert.equal(e.code, 'connection-lost');
      assert.equal(e.retryable, true);
      assert.equal((await transport.exec(['echo', 'back'])).stdout.toString(), 'back\n');
      await eventually(async () => !running(pid), `orphan ${pid} killed`);
    } finally {
      for (const session of frozen) signal(session, 'SIGKILL');
      spawnSync('kill', ['-KILL', pid]);
      await transport.close();
    }
  });

  it('finds that sshd ignores the SSH "signal" request for root (why the transport kills)', async () => {
    const client = new ssh2.Client();
    await new Promise<void>((resolve, reject) => {
      client.once('ready', resolve).once('error', reject);
      client.connect({
        host: sshd.address,
        port: sshd.port,
        username: 'root',
        privateKey: readFileSync(sshd.clientKeyPath),
      });
    });
    const pidFile = `${scratch}/signal.pid`;
    const ended = new Promise<void>((resolve) =>
      client.exec(`echo $$ > '${pidFile}'; exec sleep 30`, (error, stream) => {
        assert.ifError(error);
        stream.resume();
        stream.stderr.resume();
        stream.once('close', () => resolve());
        pidIn(pidFile).then(() => stream.signal('KILL'));
      }),
    );
    await eventually(
      async () => /session signalling requires privilege separation/.test(sshd.log()),
      'sshd refuses the signal request',
    );
    // sshd handles a connection's requests in order: once it has answered a later one, it is
    // done with the signal request (no fixed wait for a kill that would come late).
    await new Promise<void>((resolve, reject) =>
      client.exec('true', (error, stream) => {
        if (error) return reject(error);
        stream.resume();
        stream.stderr.resume();
        stream.once('close', () => resolve());
      }),
    );
    const pid = await pidIn(pidFile);
    assert.ok(running(pid), 'the command still runs after "signal"');
    spawnSync('kill', ['-KILL', pid]);
    await ended;
    client.end();
  });
});
