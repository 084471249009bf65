// transport/bounded-file.ts against real special files: a FIFO (mkfifo), /dev/zero, a folder, a
// sparse file past the limit, and a /proc file whose fstat says 0 bytes while it holds more — the
// case of a file that grows after it was checked.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { localSha256 } from '../../src/engines/real/image-staging.js';
import {
  openRegularFileStream,
  readBoundedFile,
  readBoundedFileSync,
} from '../../src/transport/bounded-file.js';
import { LocalTransport } from '../../src/transport/local-transport.js';

let dir: string;
let fifo: string;

before(() => {
  dir = mkdtempSync(`${tmpdir()}/vfleet-bounded-`);
  fifo = `${dir}/fifo`;
  execFileSync('mkfifo', [fifo]);
});
after(() => rmSync(dir, { recursive: true, force: true }));

const refusals = () => [
  { name: 'a FIFO', path: fifo, reason: /^is a FIFO \(named pipe\), not a regular file$/ },
  { name: '/dev/zero', path: '/dev/zero', reason: /^is a character device, not a regular file$/ },
  { name: 'a folder', path: dir, reason: /^is a directory, not a regular file$/ },
  { name: 'a missing file', path: `${dir}/nothing`, reason: /^does not exist$/ },
];

describe('readBoundedFileSync / readBoundedFile', () => {
  it('reads a regular file whole', async () => {
    const path = `${dir}/ok`;
    writeFileSync(path, 'a\tb\n');
    for (const read of [readBoundedFileSync(path, 4), await readBoundedFile(path, 4)]) {
      assert.ok(read.ok);
      assert.equal(read.bytes.toString(), 'a\tb\n');
    }
  });

  for (const sync of [true, false]) {
    it(`${sync ? 'sync' : 'async'}: refuses special files in one line, without waiting or reading`, async () => {
      for (const { name, path, reason } of refusals()) {
        const read = sync ? readBoundedFileSync(path, 1024) : await readBoundedFile(path, 1024);
        assert.equal(read.ok, false, name);
        if (!read.ok) assert.match(read.reason, reason, name);
      }
    });

    it(`${sync ? 'sync' : 'async'}: refuses a file over the limit before reading it`, async () => {
      const path = `${dir}/big`;
      writeFileSync(path, '');
      truncateSync(path, 16 * 1024 * 1024 + 1); // sparse: no 16 MiB written
      const read = sync
        ? readBoundedFileSync(path, 16 * 1024 * 1024)
        : await readBoundedFile(path, 16 * 1024 * 1024);
      assert.equal(read.ok, false);
      if (!read.ok)
        assert.match(read.reason, /^is 16777217 bytes; the limit is 16777216 bytes \(16 MiB\)$/);
    });

    it(`${sync ? 'sync' : 'async'}: stops a file that turns out larger than its size said`, async () => {
      // /proc files report size 0 to fstat and hold more: what a file growing after the check is.
      const read = sync
        ? readBoundedFileSync('/proc/self/maps', 100)
        : await readBoundedFile('/proc/self/maps', 100);
      assert.equal(read.ok, false);
      if (!read.ok) assert.match(read.reason, /^grew past 100 bytes/);
    });
  }
});

describe('image files (openRegularFileStream, LocalTransport, localSha256)', () => {
  it('refuses a FIFO and /dev/zero instead of reading for ever', async () => {
    const local = new LocalTransport('here');
    for (const path of [fifo, '/dev/zero']) {
      await assert.rejects(openRegularFileStream(path), /not a regular file/);
      await assert.rejects(local.createReadStream(path), /not a regular file/);
      await assert.rejects(localSha256(path), /not a regular file/);
    }
  });

  it('streams a regular file', async () => {
    const path = `${dir}/image`;
    writeFileSync(path, 'x'.repeat(100_000));
    const { stream, size } = await openRegularFileStream(path);
    let length = 0;
    for await (const chunk of stream) length += (chunk as Buffer).length;
    assert.equal(size, 100_000);
    assert.equal(length, 100_000);
  });
});
