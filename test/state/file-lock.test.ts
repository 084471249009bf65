// The start lock: mutual exclusion between bodies, a clear timeout behind a live holder.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, describe, it } from 'node:test';
import { isVfleetError } from '../../src/model/errors.js';
import { withFileLock } from '../../src/state/file-lock.js';

const dir = mkdtempSync(`${tmpdir()}/vfleet-lock-`);
const options = { timeoutMs: 5_000, staleMs: 30_000, purpose: 'testing' };

after(() => rmSync(dir, { recursive: true, force: true }));

describe('withFileLock', () => {
  it('never runs two bodies at once, and removes the lock after the last', async () => {
    const path = `${dir}/exclusive.lock`;
    let inside = 0;
    let most = 0;
    const body = async () => {
      inside += 1;
      most = Math.max(most, inside);
      await new Promise((resolve) => setImmediate(resolve));
      inside -= 1;
    };
    await Promise.all(Array.from({ length: 10 }, () => withFileLock(path, options, body)));
    assert.equal(most, 1);
    assert.equal(existsSync(path), false);
  });

  it('releases the lock when the body throws', async () => {
    const path = `${dir}/throws.lock`;
    await assert.rejects(
      withFileLock(path, options, async () => {
        throw new Error('boom');
      }),
      /boom/,
    );
    assert.equal(existsSync(path), false);
  });

  it('gives up behind a live, fresh holder with lock-timeout naming the file', async () => {
    const path = `${dir}/held.lock`;
    writeFileSync(path, JSON.stringify({ pid: process.pid, token: 'other', since: Date.now() }));
    await assert.rejects(
      withFileLock(path, { ...options, timeoutMs: 100 }, async () => 'never'),
      (e: unknown) => isVfleetError(e) && e.code === 'lock-timeout' && e.message.includes(path),
    );
    assert.equal(existsSync(path), true, "another holder's lock is left alone");
  });
});
