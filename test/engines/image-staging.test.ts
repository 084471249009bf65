// The staging race: many creates stage one image on one host at once — several jobs of one
// worker (one stager) and several workers (a stager each) — through the local transport and
// through a real sshd. Every staging must succeed and leave one complete, verified file and no
// temporary file. Before temporary names were unique per call, 1–5 of four such stagings
// failed with a raw ENOENT (two writes of `.verified-<role>` shared one temporary name).
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { HostLayout } from '../../src/engines/real/host-layout.js';
import { ImageStager } from '../../src/engines/real/image-staging.js';
import { LocalTransport } from '../../src/transport/local-transport.js';
import { SshTransport } from '../../src/transport/ssh-transport.js';
import type { Transport } from '../../src/transport/transport.js';
import { startSshd, type TestSshd } from '../helpers/sshd.js';

const SHARED = 4; // stagings through one stager: one worker's concurrent jobs
const SEPARATE = 4; // stagings through a stager each: other workers, other engine objects

async function stagingRace(t: Transport, work: string): Promise<void> {
  const image = `${work}/base.img`;
  const bytes = randomBytes(2 * 1024 * 1024);
  writeFileSync(image, bytes);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const layout = new HostLayout(t.host, `${work}/data`);
  const shared = new ImageStager(t, layout);
  const stagers = [
    ...Array.from({ length: SHARED }, () => shared),
    ...Array.from({ length: SEPARATE }, () => new ImageStager(t, layout)),
  ];
  const results = await Promise.allSettled(stagers.map((s) => s.stageLocal(image, 'disk.qcow2')));
  const failed = results.flatMap((r) => (r.status === 'rejected' ? [String(r.reason)] : []));
  assert.deepEqual(failed, [], `${failed.length} of ${stagers.length} stagings failed`);
  const dir = layout.imageDir(sha256);
  for (const r of results) {
    assert.deepEqual(r.status === 'fulfilled' && r.value, { path: `${dir}/disk.qcow2`, sha256 });
  }
  assert.ok(readFileSync(`${dir}/disk.qcow2`).equals(bytes), 'the staged file is whole');
  assert.equal(readFileSync(`${dir}/.verified-disk.qcow2`, 'utf8'), `${sha256}\n`);
  assert.deepEqual(readdirSync(dir).sort(), ['.verified-disk.qcow2', 'disk.qcow2']);
}

describe('image staging: concurrent stagings of one image on one host', () => {
  let work: string;
  let sshd: TestSshd | undefined;
  const transports: Transport[] = [];
  before(() => {
    work = mkdtempSync(`${tmpdir()}/vfleet-test-staging-`);
  });
  after(async () => {
    await Promise.all(transports.map((t) => t.close()));
    await sshd?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('through the local transport, all succeed with one complete file', async () => {
    const local = new LocalTransport('stage-local');
    transports.push(local);
    await stagingRace(local, mkdtempSync(`${work}/local-`));
  });

  it('through ssh to a real sshd, all succeed with one complete file', async () => {
    sshd = await startSshd({ address: '127.0.0.57' });
    const ssh = new SshTransport(sshd.host('stage-ssh'));
    transports.push(ssh);
    await stagingRace(ssh, mkdtempSync(`${work}/ssh-`));
  });
});
