// A real OpenSSH sshd for one test file (habit 10, docs/architecture.md): its own mkdtemp folder with a fresh
// ed25519 host key and client key, listening on a 127.0.0.x loopback address and a free port,
// logging at VERBOSE to a file the tests read. The caller stops it in an after() hook; stop()
// also kills the per-connection session processes, which outlive a stopped listener.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import type { Host } from '../../src/model/fleet.js';
import { aModelHost } from './hosts.js';

export interface TestSshd {
  readonly address: string;
  readonly port: number;
  readonly dir: string;
  /** The host's public key line, "ssh-ed25519 AAAA…", without a comment. */
  readonly hostKey: string;
  /** "SHA256:…" as ssh-keygen -lf prints it. */
  readonly hostKeyFingerprint: string;
  readonly clientKeyPath: string;
  readonly logPath: string;
  /** The listener's pid (a new one after revive()). */
  readonly pid: number;
  /** A Host of engine ssh pointing here, as root with the client key. */
  host(name: string, overrides?: Partial<NonNullable<Host['ssh']>>): Host;
  log(): string;
  /** The pids of the per-connection session processes (children of the listener). */
  sessionPids(): number[];
  /**
   * The sshd processes serving the connection a command runs on: the command's ancestors below
   * the listener, nearest first. Unlike sessionPids() it names no other connection's session,
   * which may be exiting (a closed transport's) at the moment a test signals it.
   */
  sessionOf(commandPid: number): number[];
  /** SIGKILLs every session process: every client connection drops at once. */
  dropConnections(): void;
  /** SIGKILLs the listener and every session (the host's sshd dies with the host); keeps its folder. */
  crash(): void;
  /** Starts the listener again on the same address, port, keys and folder (after crash()). */
  revive(): Promise<void>;
  stop(): Promise<void>;
}

export interface TestSshdOptions {
  /** A loopback address of its own, e.g. '127.0.0.7', so tests never meet another's sshd. */
  readonly address: string;
  readonly maxSessions?: number;
  /** Default true: commands skip root's ~/.bashrc (see the config below). */
  readonly skipBashrc?: boolean;
}

// A bound for a loaded machine (the suite runs files side by side), not a timing test.
const START_TIMEOUT_MS = 30_000;

function freePort(address: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, address, () => {
      const bound = server.address();
      server.close(() =>
        typeof bound === 'object' && bound ? resolve(bound.port) : reject(new Error('no port')),
      );
    });
  });
}

/** True once the port answers with an SSH identification line. */
function answersSsh(address: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const conn = createConnection({ host: address, port });
    const done = (ok: boolean) => {
      conn.destroy();
      resolve(ok);
    };
    conn.setTimeout(500, () => done(false));
    conn.on('data', (chunk) => done(chunk.toString('latin1').startsWith('SSH-2.0-')));
    conn.on('error', () => done(false));
  });
}

export function keygen(path: string): { publicLine: string; fingerprint: string } {
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', '', '-f', path]);
  const [type, base64] = readFileSync(`${path}.pub`, 'utf8').trim().split(/\s+/);
  const fingerprint = execFileSync('ssh-keygen', ['-l', '-f', `${path}.pub`], {
    encoding: 'utf8',
  }).split(/\s+/)[1] as string;
  return { publicLine: `${type} ${base64}`, fingerprint };
}

/** The parent pid from /proc/<pid>/stat; null when the process is gone. */
function parentOf(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // The command name is in parentheses and may hold spaces: the ppid follows the last ')'.
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return null;
  }
}

function ancestorsBelow(pid: number, listener: number): number[] {
  const chain: number[] = [];
  for (let p = parentOf(pid); p !== listener; p = parentOf(p)) {
    if (p === null || p <= 1) throw new Error(`pid ${pid} does not run under sshd ${listener}`);
    chain.push(p);
  }
  return chain;
}

function childrenOf(pid: number): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry) && parentOf(Number(entry)) === pid)
    .map(Number);
}

function killAll(pids: readonly number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

async function startOnce(dir: string, options: TestSshdOptions): Promise<TestSshd | null> {
  const { address } = options;
  const port = await freePort(address);
  const logPath = `${dir}/sshd.log`;
  const configPath = `${dir}/sshd_config`;
  const host = keygen(`${dir}/host_ed25519`);
  const clientKeyPath = `${dir}/client_ed25519`;
  const client = keygen(clientKeyPath);
  writeFileSync(`${dir}/authorized_keys`, `${client.publicLine}\n`);
  writeFileSync(
    configPath,
    [
      `ListenAddress ${address}:${port}`,
      `HostKey ${dir}/host_ed25519`,
      `AuthorizedKeysFile ${dir}/authorized_keys`,
      `PidFile ${dir}/sshd.pid`,
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'StrictModes no',
      'UsePAM no',
      `MaxSessions ${options.maxSessions ?? 10}`,
      'MaxStartups 100',
      'LogLevel VERBOSE',
      'Subsystem sftp internal-sftp',
      // bash sources ~/.bashrc for every command sshd starts, unless it believes it is nested;
      // this machine's root .bashrc runs `pyenv init` (~250 ms a command), which the tests skip.
      ...(options.skipBashrc === false ? [] : ['SetEnv SHLVL=1']),
      '',
    ].join('\n'),
  );
  // sshd's privilege separation directory; Debian creates it from a systemd unit we do not run.
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const readLog = () => {
    try {
      return readFileSync(logPath, 'utf8');
    } catch {
      return '';
    }
  };
  let output = '';
  /** Starts the listener on this config and waits until it answers; null: the port was taken. */
  const launch = async (): Promise<{ child: ChildProcess; exited: Promise<void> } | null> => {
    const child: ChildProcess = spawn(
      '/usr/sbin/sshd',
      ['-D', '-e', '-f', configPath, '-E', logPath],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    child.stderr?.on('data', (chunk) => {
      output += chunk;
    });
    child.once('error', () => undefined);
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!(await answersSsh(address, port))) {
      if (child.exitCode !== null || child.signalCode !== null) {
        // Most likely the port was taken between freePort() and the bind: try another.
        if (/Address already in use/.test(readLog() + output)) return null;
        throw new Error(`sshd exited at start: ${output}${readLog()}`);
      }
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`sshd did not answer within ${START_TIMEOUT_MS} ms: ${output}${readLog()}`);
      }
      await delay(20);
    }
    return { child, exited };
  };
  const running = await launch();
  if (!running) return null;
  let live = running;
  const pidNow = () => live.child.pid as number;
  return {
    address,
    port,
    dir,
    hostKey: host.publicLine,
    hostKeyFingerprint: host.fingerprint,
    clientKeyPath,
    logPath,
    get pid() {
      return pidNow();
    },
    host: (name, overrides = {}) =>
      aModelHost({
        name,
        engine: 'ssh',
        ssh: {
          address,
          port,
          user: 'root',
          hostKey: host.publicLine,
          identityFile: clientKeyPath,
          ...overrides,
        },
        dataDir: `${dir}/data`,
      }),
    log: readLog,
    sessionPids: () => childrenOf(pidNow()),
    sessionOf: (commandPid) => ancestorsBelow(commandPid, pidNow()),
    dropConnections: () => killAll(childrenOf(pidNow())),
    crash() {
      killAll([pidNow(), ...childrenOf(pidNow())]);
    },
    async revive() {
      await live.exited;
      const again = await launch();
      if (!again) throw new Error(`sshd could not bind ${address}:${port} again`);
      live = again;
    },
    async stop() {
      const { child, exited } = live;
      if (child.exitCode === null && child.signalCode === null) {
        const sessions = childrenOf(pidNow());
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
        await exited;
        clearTimeout(timer);
        killAll(sessions);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function startSshd(options: TestSshdOptions): Promise<TestSshd> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const dir = mkdtempSync(`${tmpdir()}/vfleet-test-sshd-`);
    const server = await startOnce(dir, options).catch((e) => {
      rmSync(dir, { recursive: true, force: true });
      throw e;
    });
    if (server) return server;
    rmSync(dir, { recursive: true, force: true });
  }
  throw new Error(`sshd could not bind a free port of ${options.address} in 5 attempts`);
}
