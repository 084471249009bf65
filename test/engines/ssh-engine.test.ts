// The real engine over SSH: the shared conformance suite against RealEngine over SshTransport on
// two real sshd hosts (loopback addresses of this file's own), with sandboxes of the busybox test
// image, as real-engine.test.ts runs it over the local transport; then what only SSH adds: facts
// read through it, and files moved through SFTP at the speed of the link.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import {
  createReadStream,
  createWriteStream,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { RealEngine, type RealEngineOptions } from '../../src/engines/real/real-engine.js';
import { isVfleetError } from '../../src/model/errors.js';
import type { Host } from '../../src/model/fleet.js';
import { SshTransport, type SshTransportOptions } from '../../src/transport/ssh-transport.js';
import { engineTestImages, rootfsInventory } from '../helpers/engine-test-images.js';
import { cleanUp, sandboxRequest } from '../helpers/real-hosts.js';
import { startSshd, type TestSshd } from '../helpers/sshd.js';
import { engineConformance } from './conformance.js';

const suffix = process.pid.toString(36);
const options: RealEngineOptions = {
  sandbox: { stopTimeoutMs: 2_000 },
  qemu: { accel: 'tcg', stopTimeoutMs: 2_000 },
};
/**
 * A failed host (below) accepts TCP but never says hello: each call waits this long for the
 * handshake, twice in the suite. A connect here takes about 0.1 s.
 */
const ssh: SshTransportOptions = { readyTimeoutMs: 2_000 };

/** What a call that never settles becomes, after 10 s. */
const hung = Symbol('hung');
const within = <T>(p: Promise<T>) =>
  Promise.race([p, delay(10_000, undefined, { ref: false }).then(() => Promise.reject(hung))]);

interface SshHost {
  readonly name: string;
  readonly sshd: TestSshd;
  readonly host: Host;
  readonly transport: SshTransport;
  readonly engine: RealEngine;
}

async function sshHosts(tag: string, addresses: readonly string[]): Promise<SshHost[]> {
  const hosts: SshHost[] = [];
  try {
    for (const [i, address] of addresses.entries()) {
      const sshd = await startSshd({ address });
      const name = `${tag}-${i}-${suffix}`;
      const host = sshd.host(name);
      const transport = new SshTransport(host, ssh);
      hosts.push({ name, sshd, host, transport, engine: new RealEngine(host, transport, options) });
    }
    return hosts;
  } catch (e) {
    await stopHosts(hosts);
    throw e;
  }
}

/** Kills what the engines left (sandboxes detach from the ssh session), then the sshds. */
async function stopHosts(hosts: readonly SshHost[]): Promise<number[]> {
  const left: number[] = [];
  for (const h of hosts) {
    await h.transport.close().catch(() => undefined);
    try {
      process.kill(h.sshd.pid, 'SIGCONT'); // in case a test stopped it and failed
    } catch {
      // gone
    }
    left.push(...(await cleanUp(h.host.dataDir, h.name)).pids);
    await h.sshd.stop();
  }
  return left;
}

engineConformance('real (ssh transport, sandbox driver)', async () => {
  const images = await engineTestImages();
  const hosts = await sshHosts('sshc', ['127.0.0.40', '127.0.0.41']);
  const [a, b] = hosts as [SshHost, SshHost];
  const byName = (name: string) => hosts.find((h) => h.name === name) as SshHost;
  return {
    a: a.engine,
    b: b.engine,
    request: (name, generation) => sandboxRequest(images, name, generation),
    inventory: rootfsInventory(),
    patch: 'refuses',
    // A host that hangs: its sessions die with the connection vfleet holds, and its sshd stops
    // answering (SIGSTOP: the kernel still accepts TCP, no SSH banner ever comes), so every call
    // waits out the handshake timeout.
    fail: async (name) => {
      const h = byName(name);
      process.kill(h.sshd.pid, 'SIGSTOP');
      h.sshd.dropConnections();
    },
    recover: async (name) => {
      process.kill(byName(name).sshd.pid, 'SIGCONT');
    },
    close: async () => {
      assert.deepEqual(await stopHosts(hosts), [], 'no process outlives the suite');
    },
  };
});

describe('real engine over ssh', () => {
  let h: SshHost;
  let work: string;
  before(async () => {
    [h] = (await sshHosts('sshe', ['127.0.0.42'])) as [SshHost];
    work = mkdtempSync(`${tmpdir()}/vfleet-ssh-engine-`);
  });
  after(async () => {
    const left = h ? await stopHosts([h]) : [];
    rmSync(work, { recursive: true, force: true });
    assert.deepEqual(left, []);
  });

  it('reads its facts from the host through ssh', async () => {
    const facts = await h.engine.facts();
    assert.equal(facts.engine, 'ssh');
    assert.equal(facts.name, h.name);
    const kib = Number(/MemTotal:\s+(\d+)/.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1]);
    assert.equal(facts.memoryMiB, Math.floor(kib / 1024));
    assert.equal(facts.os.kernel, readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim());
    assert.ok(facts.runs.includes('container') && facts.runs.includes('vm'));
  });

  it('sends a file about as fast as it fetches one (no stall per SFTP write)', async (t) => {
    // Each SFTP write waits for its reply. Without TCP_NODELAY, Nagle's algorithm holds the
    // tail of every write request until the server's delayed ACK (40 ms on Linux): uploads
    // crawled at under 2 MB/s on loopback, 12 times slower than downloads, and every exec
    // paid the same wait. Measured against each other in one run, not against a clock.
    const local = `${work}/random.bin`;
    const back = `${work}/back.bin`;
    const remote = `${h.sshd.dir}/random.bin`;
    const bytes = randomBytes(16 * 1024 * 1024);
    await writeFile(local, bytes);
    const timed = async (copy: () => Promise<void>) => {
      const started = process.hrtime.bigint();
      await copy();
      return Number(process.hrtime.bigint() - started) / 1e6;
    };
    const up: number[] = [];
    const down: number[] = [];
    // The best of up to five rounds, stopping at the first that holds: a machine busy with other
    // work slows one transfer and not the other now and then, while the stall this guards
    // against slowed every send, every round.
    for (
      let round = 0;
      round < 5 && !(round >= 2 && Math.min(...up) < 4 * Math.min(...down));
      round++
    ) {
      up.push(
        await timed(async () =>
          pipeline(createReadStream(local), await h.transport.createWriteStream(remote)),
        ),
      );
      down.push(
        await timed(async () =>
          pipeline(await h.transport.createReadStream(remote), createWriteStream(back)),
        ),
      );
    }
    const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    assert.equal(sha(readFileSync(back)), sha(bytes));
    const [upMs, downMs] = [Math.min(...up), Math.min(...down)];
    t.diagnostic(`16 MiB over SFTP: send ${upMs.toFixed(0)} ms, fetch ${downMs.toFixed(0)} ms`);
    assert.ok(upMs < 4 * downMs, `send ${upMs} ms against fetch ${downMs} ms`);
  });

  it('fails a copy whose connection drops mid-transfer, instead of waiting forever', async () => {
    // ssh2 never answers an SFTP request made after its session ended: a stream that was
    // between two requests when the connection dropped (an upload waiting for the next bytes
    // to send, a download its reader holds back), or whose write failed with the drop (ssh2
    // then waits for its handle's close), waited forever, and with it a move or an image
    // staging and the apply around it.
    const failed = (e: unknown) => {
      assert.notEqual(e, hung, 'the copy hangs');
      return isVfleetError(e) && e.code === 'connection-lost' && e.retryable;
    };
    const remote = `${h.sshd.dir}/dropped.bin`;
    const chunk = randomBytes(64 * 1024);
    async function* dropAfterFirstChunk() {
      yield chunk;
      while ((statSync(remote, { throwIfNoEntry: false })?.size ?? 0) < chunk.length) {
        await delay(10);
      }
      h.sshd.dropConnections();
      await delay(300);
      yield chunk;
    }
    const upload = await h.transport.createWriteStream(remote);
    await assert.rejects(within(pipeline(Readable.from(dropAfterFirstChunk()), upload)), failed);
    assert.equal((await h.transport.exec(['echo', 'back'])).stdout.toString(), 'back\n');

    // And while writes are in flight: ssh2 fails them, then swallows that error.
    const local = `${work}/big-local.bin`;
    writeFileSync(local, randomBytes(32 * 1024 * 1024));
    const streaming = pipeline(
      createReadStream(local),
      await h.transport.createWriteStream(remote),
    );
    while ((statSync(remote, { throwIfNoEntry: false })?.size ?? 0) === 0) await delay(5);
    h.sshd.dropConnections();
    await assert.rejects(within(streaming), failed);
    assert.equal((await h.transport.exec(['echo', 'back'])).stdout.toString(), 'back\n');

    const big = `${h.sshd.dir}/big.bin`;
    writeFileSync(big, randomBytes(4 * 1024 * 1024));
    let first = true;
    const slowReader = new Writable({
      highWaterMark: 1,
      write(_chunk, _encoding, done) {
        if (!first) return done();
        first = false;
        setTimeout(() => {
          h.sshd.dropConnections();
          setTimeout(done, 300);
        }, 200);
      },
    });
    const download = await h.transport.createReadStream(big);
    await assert.rejects(within(pipeline(download, slowReader)), failed);
    assert.equal((await h.transport.exec(['echo', 'back'])).stdout.toString(), 'back\n');
  });

  it('settles every SFTP call a dropped connection interrupts: done again, or failed retryably', async () => {
    // ssh2 fails the requests in flight when the connection drops, then closes the file
    // handle and waits for an answer that never comes (writeFile, readFile); and it may hand
    // over an SFTP session after its connection closed, dead from birth. Each of these left a
    // call waiting forever.
    const settled = async (call: Promise<unknown>) => {
      try {
        await within(call);
        return 'done';
      } catch (e) {
        assert.notEqual(e, hung, 'an SFTP call hangs');
        assert.ok(isVfleetError(e) && e.retryable, String(e));
        return 'failed';
      }
    };
    const path = `${h.sshd.dir}/whole.bin`;
    const bytes = randomBytes(8 * 1024 * 1024);
    const writing = h.transport.writeFile(path, bytes);
    const growing = () =>
      readdirSync(h.sshd.dir).some(
        (f) => f.startsWith('whole.bin.vfleet-tmp-') && statSync(`${h.sshd.dir}/${f}`).size > 0,
      );
    while (!growing()) await delay(2);
    h.sshd.dropConnections();
    await settled(writing);
    writeFileSync(path, bytes);
    const reading = h.transport.readFile(path);
    await delay(5);
    h.sshd.dropConnections();
    await settled(reading);
    // Many small calls, the drop at a different moment each round.
    const small = randomBytes(256 * 1024);
    for (let round = 0; round < 12; round++) {
      const calls = Array.from({ length: 6 }, (_, i) =>
        settled(
          i % 2 === 0
            ? h.transport.writeFile(`${h.sshd.dir}/small-${i}`, small)
            : h.transport.readFile(path),
        ),
      );
      await delay(round);
      h.sshd.dropConnections();
      await Promise.all(calls);
    }
    assert.equal((await h.transport.exec(['echo', 'back'])).stdout.toString(), 'back\n');
  });
});
