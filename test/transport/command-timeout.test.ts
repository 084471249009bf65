// withCommandTimeout on a real transport: a command without its own limit is killed at the
// default one; a command's own limit wins; everything else passes through.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { isVfleetError } from '../../src/model/errors.js';
import { LocalTransport } from '../../src/transport/local-transport.js';
import { withCommandTimeout } from '../../src/transport/transport.js';

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
      await delay(3_200);
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
