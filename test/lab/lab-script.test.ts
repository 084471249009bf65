// scripts/lab.sh brings up sshd hosts that vfleet can use as written in the spec it generates:
// the spec is valid, each host accepts the client key over ssh2 (the library the ssh engine
// uses) and shows exactly the pinned host key, a wrong pin is refused, and `down` leaves no
// sshd — nor any QEMU or sandbox the hosts ran, nor their cgroups, whether vfleet's state is
// there to destroy them (`vfleet destroy`) or not (the sweep by the lab's folders). Real sshd
// processes on loopback addresses (habit 10, docs/architecture.md), in a temporary LAB_DIR on a
// free port; root only, because sshd then runs as it does on a real host (privilege
// separation, login as root).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { Client } from 'ssh2';
import type { Host } from '../../src/model/fleet.js';
import { loadFleet } from '../../src/spec/load-fleet.js';
import { fromRoot } from '../helpers/paths.js';
import { startRedisServer, type TestRedisServer } from '../helpers/redis.js';
import { imageTools, missingTools } from '../helpers/test-images.js';

const run = promisify(execFile);
/** The first `up` may build the test images (a kernel download); later ones reuse them. */
const UP_TIMEOUT_MS = 15 * 60_000;

const missing = missingTools({
  ...imageTools,
  sshd: 'openssh-server',
  'ssh-keygen': 'openssh-client',
  ss: 'iproute2',
  'qemu-system-x86_64': 'qemu-system-x86',
  unshare: 'util-linux',
  'redis-server': 'redis-server',
});
const skip =
  process.getuid?.() !== 0
    ? 'needs root (sshd with privilege separation, as on a real host)'
    : missing.length > 0 && `needs ${missing.join(', ')}`;

let labDir = '';
let spec = '';
let env: NodeJS.ProcessEnv = {};

/**
 * scripts/lab.sh in the lab's folder (never the checkout, whose private Redis `down` would
 * use), with the lab's environment and whatever `extra` adds.
 */
function lab(args: string[], extra: NodeJS.ProcessEnv = {}) {
  return run('bash', [fromRoot('scripts/lab.sh'), ...args], {
    env: { ...env, ...extra },
    cwd: labDir,
    maxBuffer: 16 * 1024 * 1024,
  });
}

/** A port free on both lab addresses right now (the script checks again, and says if not). */
function freePort(): Promise<number> {
  const listen = (address: string, port: number) =>
    new Promise<number>((done, fail) => {
      const server = createServer();
      server.once('error', fail);
      server.listen(port, address, () => {
        const bound = server.address();
        server.close(() => (typeof bound === 'object' && bound ? done(bound.port) : fail()));
      });
    });
  return listen('127.0.0.2', 0).then((port) => listen('127.0.0.3', port));
}

/** Logs in with the spec's settings and runs one command; rejects on any refusal. */
function sshExec(host: Host, pinnedKey: string, command: string): Promise<string> {
  const endpoint = host.ssh;
  assert.ok(endpoint?.identityFile);
  const pinnedBlob = Buffer.from(pinnedKey.split(' ')[1] ?? '', 'base64');
  return new Promise((done, fail) => {
    const client = new Client();
    client.once('error', fail);
    client.once('ready', () => {
      client.exec(command, (error, stream) => {
        if (error) return fail(error);
        let out = '';
        stream.on('data', (chunk: Buffer) => {
          out += chunk;
        });
        stream.once('close', () => {
          client.end();
          done(out);
        });
      });
    });
    client.connect({
      host: endpoint.address,
      port: endpoint.port,
      username: endpoint.user,
      privateKey: readFileSync(resolve(dirname(spec), endpoint.identityFile as string)),
      hostVerifier: (key: Buffer) => key.equals(pinnedBlob),
      readyTimeout: 20_000,
    });
  });
}

/** `vfleet` with the lab's environment and whatever `extra` adds; rejects on a non-zero exit. */
function vfleet(args: string[], extra: NodeJS.ProcessEnv) {
  return run(process.execPath, [fromRoot('bin', 'vfleet.js'), ...args], {
    cwd: labDir,
    env: { ...env, ...extra },
    maxBuffer: 16 * 1024 * 1024,
  });
}

/** The cgroups the lab's sandboxes were given, as their records name them. */
function sandboxCgroups(): string[] {
  const found: string[] = [];
  for (const host of readdirSync(`${labDir}/hosts`)) {
    const instances = `${labDir}/hosts/${host}/data/instances`;
    if (!existsSync(instances)) continue;
    for (const name of readdirSync(instances)) {
      const record = `${instances}/${name}/record.json`;
      if (!existsSync(record)) continue;
      const cgroup = JSON.parse(readFileSync(record, 'utf8')).driver?.cgroup;
      if (typeof cgroup === 'string') found.push(cgroup);
    }
  }
  return found;
}

/** Processes (zombies aside) whose command line names the lab folder. */
function labProcesses(): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const state = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '')[0];
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (state !== 'Z' && cmdline.includes(labDir)) found.push(`${pid} ${cmdline}`);
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

describe('scripts/lab.sh', { skip }, () => {
  let hosts: readonly Host[] = [];

  before(
    async () => {
      labDir = mkdtempSync(`${tmpdir()}/vfleet-lab-`);
      spec = `${labDir}/lab.yaml`;
      for (let attempt = 1; ; attempt++) {
        const port = await freePort();
        env = { ...process.env, LAB_DIR: labDir, LAB_SPEC: spec, LAB_PORT: String(port) };
        try {
          await lab(['up', '2']);
          break;
        } catch (e) {
          // Taken between freePort() and sshd's bind: try another.
          if (attempt >= 5 || !/already in use/.test(String((e as { stderr?: string }).stderr)))
            throw e;
        }
      }
      const loaded = loadFleet(readFileSync(spec), spec);
      assert.deepEqual(loaded.diagnostics, []);
      hosts = loaded.fleet?.hosts ?? [];
    },
    { timeout: UP_TIMEOUT_MS },
  );

  after(async () => {
    if (!labDir) return;
    await lab(['down']).catch(() => undefined);
    rmSync(labDir, { recursive: true, force: true });
  });

  it('writes a valid spec with two ssh hosts on 127.0.0.2 and 127.0.0.3', () => {
    assert.deepEqual(
      hosts.map((h) => [h.name, h.engine, h.ssh?.address, h.ssh?.port]),
      [
        ['lab-1', 'ssh', '127.0.0.2', Number(env.LAB_PORT)],
        ['lab-2', 'ssh', '127.0.0.3', Number(env.LAB_PORT)],
      ],
    );
    for (const host of hosts) assert.ok(host.dataDir.startsWith(`${labDir}/hosts/${host.name}/`));
  });

  it('lets the client key in, each host showing its pinned key', async () => {
    for (const host of hosts) {
      const out = await sshExec(host, host.ssh?.hostKey ?? '', 'echo "$SSH_CONNECTION"');
      assert.match(out, new RegExp(` ${host.ssh?.address} ${host.ssh?.port}\\n$`));
    }
  });

  it('is refused by a client that pinned another key', async () => {
    const [first, second] = hosts;
    assert.ok(first && second);
    await assert.rejects(sshExec(first, second.ssh?.hostKey ?? '', 'true'));
  });

  it('is harmless to bring up again', async () => {
    const { stdout } = await lab(['up', '2']);
    assert.match(stdout, /lab-1 already up/);
    assert.match(stdout, /lab-2 already up/);
    const { stdout: status } = await lab(['status']);
    assert.equal(status.match(/running/g)?.length, 2);
  });

  it('leaves no sshd running after down', async () => {
    await lab(['down']);
    assert.deepEqual(labProcesses(), []);
    const { stdout } = await lab(['status']);
    assert.equal(stdout.match(/stopped/g)?.length, 2);
  });

  describe('with instances running', () => {
    let redis: TestRedisServer;
    let state: NodeJS.ProcessEnv;
    before(async () => {
      redis = await startRedisServer({ args: ['--maxmemory-policy', 'noeviction'], tcp: true });
      state = { REDIS_URL: `${redis.url}/0` };
    });
    after(async () => redis.stop());

    /** The lab up, the spec applied: two sandboxes and a VM, each checked in /proc. */
    async function upAndApply() {
      await lab(['up', '2']);
      await vfleet(['apply', '-f', spec, '--auto-approve'], state);
      const running = labProcesses();
      assert.equal(running.filter((p) => /qemu-system/.test(p)).length, 1, running.join('\n'));
      assert.equal(running.filter((p) => /\bunshare\b/.test(p)).length, 2, running.join('\n'));
      return sandboxCgroups();
    }

    function assertNothingLeft(cgroups: readonly string[]) {
      assert.deepEqual(labProcesses(), []);
      for (const cgroup of cgroups) assert.equal(existsSync(cgroup), false, `${cgroup} is left`);
    }

    it('down destroys them with vfleet when the fleet state is there, and leaves nothing', async () => {
      const cgroups = await upAndApply();
      const { stdout } = await lab(['down'], state);
      assert.match(stdout, /Destroy complete: 3 actions done\./);
      assertNothingLeft(cgroups);
      assert.deepEqual(await redis.client().hkeys('vfleet:{ssh-lab}:instances'), []);
    });

    it('down sweeps them by the lab folders when no state knows them', async () => {
      await redis.client().flushall();
      const cgroups = await upAndApply();
      // No REDIS_URL and no private Redis in the folder: only the sweep can find them.
      const { stdout } = await lab(['down'], { REDIS_URL: '' });
      assert.doesNotMatch(stdout, /vfleet destroy/);
      assert.equal(stdout.match(/stopped instance process/g)?.length, 3, stdout);
      assertNothingLeft(cgroups);
    });
  });
});
