// One behavioural contract, run against every Transport (habit 10, docs/architecture.md, like
// test/engines/conformance.ts): the local one and the ssh one through a real sshd. The hosts of
// these tests are this machine, so `dir` is a scratch folder every transport of the fixture sees.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { isVfleetError } from '../../src/model/errors.js';
import { copyFile, run, type Transport } from '../../src/transport/transport.js';

export interface TransportFixture {
  /** Two transports (two hosts where the kind allows it), for copies between them. */
  readonly a: Transport;
  readonly b: Transport;
  /** A folder both can read and write. */
  readonly dir: string;
  close(): Promise<void>;
}

const rejectsWith = (promise: Promise<unknown>, code: string) =>
  assert.rejects(promise, (e) => {
    assert.ok(isVfleetError(e), `expected a VfleetError ${code}, got ${e}`);
    assert.equal(e.code, code);
    return true;
  });

/** Polls until `check` holds; a bound generous enough for a loaded machine, not a timing test. */
export async function eventually(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`never happened: ${what}`);
    await delay(30);
  }
}

/** Running on the host; a zombie (killed, not yet reaped by whoever inherited it) is not. */
const alive = async (t: Transport, pid: string) => {
  const state = (await t.exec(['ps', '-o', 'stat=', '-p', pid])).stdout.toString().trim();
  return state !== '' && !state.startsWith('Z');
};

/** A shell that records its pid and a child's, then waits: the process tree a kill must take. */
const treeScript = (dir: string, name: string) => [
  'sh',
  '-c',
  `sleep 30 & echo $! > '${dir}/${name}.child'; echo $$ > '${dir}/${name}.self'; wait`,
];

const allBytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

export function transportContract(name: string, make: () => Promise<TransportFixture>): void {
  describe(`Transport contract: ${name}`, () => {
    let f: TransportFixture;
    before(async () => {
      f = await make();
    });
    after(async () => {
      await f?.close();
    });

    it('reports exit codes, and 128 + n for a command killed by signal n', async () => {
      assert.equal((await f.a.exec(['true'])).code, 0);
      assert.equal((await f.a.exec(['sh', '-c', 'exit 7'])).code, 7);
      assert.equal((await f.a.exec(['sh', '-c', 'kill -KILL $$'])).code, 128 + 9);
    });

    it('keeps stdout and stderr apart, byte for byte', async () => {
      const result = await f.a.exec([
        'sh',
        '-c',
        "printf '\\000\\001\\377out'; printf 'err\\n' >&2",
      ]);
      assert.deepEqual(result.stdout, Buffer.from([0, 1, 255, 0x6f, 0x75, 0x74]));
      assert.equal(result.stderr.toString(), 'err\n');
    });

    it('passes arguments as they are, with no shell of its own', async () => {
      const args = ["it's", '$(id)', '`id`', '*', '~', 'a b', '', '-n', 'x\ny\r', 'é€😀'];
      const result = await f.a.exec(['printf', '%s\\0', ...args]);
      assert.equal(result.stdout.toString('utf8'), args.map((s) => `${s}\0`).join(''));
    });

    it('feeds stdin, binary included, then closes it', async () => {
      const input = Buffer.concat([allBytes, randomBytes(256 * 1024)]);
      const result = await f.a.exec(['cat'], { stdin: input });
      assert.ok(result.stdout.equals(input));
      assert.equal((await f.a.exec(['wc', '-c'], { stdin: 'four' })).stdout.toString().trim(), '4');
      // No stdin given: the command sees an empty one rather than waiting for input.
      assert.equal((await f.a.exec(['cat'])).stdout.length, 0);
    });

    it('carries large output whole (5 MiB)', async () => {
      const result = await f.a.exec(['head', '-c', String(5 * 1024 * 1024), '/dev/urandom']);
      assert.equal(result.stdout.length, 5 * 1024 * 1024);
      const check = await f.a.exec(['sha256sum'], { stdin: result.stdout });
      const expected = (await import('node:crypto'))
        .createHash('sha256')
        .update(result.stdout)
        .digest('hex');
      assert.equal(check.stdout.toString().split(' ')[0], expected);
    });

    it('reports a program that does not exist as command-failed', async () => {
      await rejectsWith(f.a.exec(['vfleet-no-such-program']), 'command-failed');
      await rejectsWith(f.a.exec([`${f.dir}/no-such-program`]), 'command-failed');
    });

    it('run() wants exit 0 and names the program otherwise', async () => {
      assert.equal((await run(f.a, ['echo', 'ok'])).toString(), 'ok\n');
      await assert.rejects(run(f.a, ['sh', '-c', 'echo nope >&2; exit 3']), (e) => {
        assert.ok(isVfleetError(e) && e.code === 'command-failed');
        assert.match(e.message, /sh exited with 3: nope/);
        return true;
      });
    });

    it('kills the whole command on timeout: nothing is left running', async () => {
      await rejectsWith(
        // Long enough for the shell to write both pids on a loaded machine, first.
        f.a.exec(treeScript(f.dir, 'timeout'), { timeoutMs: 3_000 }),
        'command-timeout',
      );
      const self = (await f.a.readFile(`${f.dir}/timeout.self`)).toString().trim();
      const child = (await f.a.readFile(`${f.dir}/timeout.child`)).toString().trim();
      await eventually(async () => !(await alive(f.a, self)), `pid ${self} gone`);
      await eventually(async () => !(await alive(f.a, child)), `pid ${child} gone`);
    });

    it('kills the whole command on abort, and refuses to start when already aborted', async () => {
      const controller = new AbortController();
      const running = f.a.exec(treeScript(f.dir, 'abort'), { signal: controller.signal });
      running.catch(() => undefined);
      // Its pid line whole (the file exists empty first), so the tree to kill is all there.
      await eventually(async () => {
        const self = await f.a.exec(['cat', `${f.dir}/abort.self`]);
        return /^\d+\n$/.test(self.stdout.toString());
      }, 'the command started');
      controller.abort();
      await rejectsWith(running, 'command-aborted');
      const self = (await f.a.readFile(`${f.dir}/abort.self`)).toString().trim();
      const child = (await f.a.readFile(`${f.dir}/abort.child`)).toString().trim();
      await eventually(async () => !(await alive(f.a, self)), `pid ${self} gone`);
      await eventually(async () => !(await alive(f.a, child)), `pid ${child} gone`);
      await rejectsWith(
        f.a.exec(['touch', `${f.dir}/never`], { signal: AbortSignal.abort() }),
        'command-aborted',
      );
      assert.equal((await f.a.exec(['test', '-e', `${f.dir}/never`])).code, 1);
    });

    it('writes a file whole with its mode, replaces it, and reads it back', async () => {
      const path = `${f.dir}/file.bin`;
      const data = Buffer.concat([allBytes, randomBytes(300 * 1024)]);
      await f.a.writeFile(path, data, 0o640);
      assert.ok((await f.a.readFile(path)).equals(data));
      assert.equal((await f.a.exec(['stat', '-c', '%a', path])).stdout.toString().trim(), '640');
      await f.a.writeFile(path, 'text ✓', 0o755);
      assert.equal((await f.a.readFile(path)).toString(), 'text ✓');
      assert.equal((await f.a.exec(['stat', '-c', '%a', path])).stdout.toString().trim(), '755');
      await f.a.writeFile(path, '');
      assert.equal((await f.a.readFile(path)).length, 0);
      assert.equal((await f.a.exec(['stat', '-c', '%a', path])).stdout.toString().trim(), '600');
      const left = (await f.a.exec(['ls', '-A', f.dir])).stdout.toString();
      assert.doesNotMatch(left, /tmp/, 'no temporary file is left behind');
    });

    it('400 concurrent writes of one path all succeed; the file is exactly one of them', async () => {
      // One worker writes one path from many jobs at once (a staged image's `.verified` file):
      // each write must rename a whole file of its own, never a mix of two, never nothing.
      const path = `${f.dir}/contended.bin`;
      const payloads = Array.from({ length: 400 }, (_, i) =>
        Buffer.concat([Buffer.from(`writer ${i}\n`), randomBytes(8 * 1024)]),
      );
      const results = await Promise.allSettled(payloads.map((p) => f.a.writeFile(path, p, 0o644)));
      const failed = results.flatMap((r, i) =>
        r.status === 'rejected' ? [`${i}: ${r.reason}`] : [],
      );
      assert.deepEqual(failed.slice(0, 5), [], `${failed.length} of 400 writes failed`);
      const final = await f.a.readFile(path);
      assert.equal(
        payloads.filter((p) => p.equals(final)).length,
        1,
        'the file is one payload, whole',
      );
      assert.equal((await f.a.exec(['stat', '-c', '%a', path])).stdout.toString().trim(), '644');
      const left = (await f.a.exec(['ls', '-A', f.dir])).stdout.toString();
      assert.doesNotMatch(left, /contended\.bin\./, 'no temporary file is left behind');
    });

    it('removes its temporary file when a write fails', async () => {
      // A target that is a non-empty folder: the data is written, the rename is refused.
      const target = `${f.dir}/occupied`;
      await run(f.a, ['mkdir', '-p', `${target}/inside`]);
      await assert.rejects(f.a.writeFile(target, 'data'));
      const left = (await f.a.exec(['ls', '-A', f.dir])).stdout.toString();
      assert.doesNotMatch(left, /occupied\./, 'no temporary file is left behind');
    });

    it('reports a missing file as ENOENT', async () => {
      const missing = `${f.dir}/missing`;
      await assert.rejects(f.a.readFile(missing), { code: 'ENOENT' });
      await assert.rejects(f.a.createReadStream(missing), { code: 'ENOENT' });
      await assert.rejects(f.a.writeFile(`${f.dir}/no/such/dir`, 'x'), { code: 'ENOENT' });
    });

    it('streams a file in and out', async () => {
      const path = `${f.dir}/stream.bin`;
      const chunks = Array.from({ length: 40 }, () => randomBytes(64 * 1024));
      await pipeline(Readable.from(chunks), await f.a.createWriteStream(path, 0o604));
      const back: Buffer[] = [];
      await pipeline(
        await f.a.createReadStream(path),
        new Writable({
          write(chunk: Buffer, _encoding, done) {
            back.push(chunk);
            done();
          },
        }),
      );
      assert.ok(Buffer.concat(back).equals(Buffer.concat(chunks)));
      assert.equal((await f.a.exec(['stat', '-c', '%a', path])).stdout.toString().trim(), '604');
    });

    it('copies a file from one host to another', async () => {
      const data = randomBytes(3 * 1024 * 1024);
      await f.a.writeFile(`${f.dir}/copy-from`, data);
      await copyFile(f.a, `${f.dir}/copy-from`, f.b, `${f.dir}/copy-to`, 0o640);
      assert.ok((await f.b.readFile(`${f.dir}/copy-to`)).equals(data));
      assert.equal(
        (await f.b.exec(['stat', '-c', '%a', `${f.dir}/copy-to`])).stdout.toString().trim(),
        '640',
      );
    });
  });
}
