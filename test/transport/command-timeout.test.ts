// withCommandTimeout on a real transport: a command without its own limit is killed at the
// default one; a command's own limit wins; everything else passes through.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, it } from 'node:test';
import { isVfleetError } from '../../src/model/errors.js';
import { withCommandTimeout } from '../../src/transport/command-limits.js';
import { LocalTransport } from '../../src/transport/local-transport.js';
import { eventually } from './contract.js';

/** The live processes whose command line names `text` (a zombie's is empty). */
function processesNaming(text: string): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry) && Number(entry) !== process.pid)
    .filter((entry) => {
      try {
        return readFileSync(`/proc/${entry}/cmdline`, 'latin1').includes(text);
      } catch {
        return false; // gone meanwhile
      }
    })
    .map(Number);
}

describe('withCommandTimeout', () => {
  it('kills a command that runs past the default limit, and lets one with its own limit run', async () => {
    const dir = mkdtempSync(`${tmpdir()}/vfleet-timeout-`);
    try {
      const t = withCommandTimeout(new LocalTransport('h'), 300);
      const started = Date.now();
      await assert.rejects(
        t.exec(['/bin/sh', '-c', `sleep 3; touch ${dir}/late`]),
        (e) => isVfleetError(e) && e.code === 'command-timeout' && e.retryable,
      );
      assert.ok(Date.now() - started < 2_000, 'killed at the default limit');
      // The shell that would touch `late` is gone long before its sleep ends: it was killed,
      // not left running (had it been left, it would touch `late` after 3 s and be gone then).
      await eventually(async () => processesNaming(dir).length === 0, 'the command gone');
      assert.equal(existsSync(`${dir}/late`), false, 'the command was killed, not left running');
      const own = await t.exec(['/bin/sh', '-c', 'sleep 0.5; echo done'], { timeoutMs: 5_000 });
      assert.equal(own.stdout.toString(), 'done\n');
      await t.writeFile(`${dir}/f`, 'x');
      assert.equal((await t.readFile(`${dir}/f`)).toString(), 'x');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
