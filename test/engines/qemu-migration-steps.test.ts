// The pure parts of a live migration's QMP steps (qemu-migration-steps.ts): when a memory
// migration under way is given up, and how an address goes into a QEMU URI.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  convergenceProblem,
  type MigrationInfo,
  uriHost,
} from '../../src/engines/real/qemu-migration-steps.js';

const MiB = 2 ** 20;
const active = (passes: number, remaining: number): MigrationInfo => ({
  status: 'active',
  'expected-downtime': 420,
  ram: { 'dirty-sync-count': passes, remaining, total: 128 * MiB },
});
const limits = { maxPasses: 30, timeoutMs: 60_000 };

describe('a live migration under way', () => {
  it('goes on while it is within its passes and its time', () => {
    assert.equal(convergenceProblem(active(1, 100 * MiB), 100, limits), undefined);
    assert.equal(convergenceProblem(active(30, 2 * MiB), 59_999, limits), undefined);
    assert.equal(convergenceProblem({ status: 'setup' }, 10, limits), undefined);
  });

  it('is called non-converging past its passes, saying what is left', () => {
    assert.equal(
      convergenceProblem(active(31, 3 * MiB), 5_000, limits),
      'the memory migration does not converge: 31 passes, 3.0 MiB of 128.0 MiB still to send, expected downtime 420 ms',
    );
  });

  it('is given up past its time', () => {
    assert.match(
      convergenceProblem(active(2, 64 * MiB), 60_001, limits) ?? '',
      /^the memory migration did not complete within 60000 ms: 2 passes, 64\.0 MiB of 128\.0 MiB/,
    );
  });
});

describe('an address in a QEMU URI', () => {
  it('is as it is, an IPv6 one in brackets', () => {
    assert.equal(uriHost('127.0.0.44'), '127.0.0.44');
    assert.equal(uriHost('hv-1.example.org'), 'hv-1.example.org');
    assert.equal(uriHost('::1'), '[::1]');
    assert.equal(uriHost('fd00:1::5'), '[fd00:1::5]');
  });
});
