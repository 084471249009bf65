// The vfleet agent of a real host (src/engines/real/host-agent.ts), run on this machine through
// the local transport against stand-in instance processes whose command lines name the files the
// real drivers' processes name (QEMU its pidfile, a sandbox's `unshare` its rootfs): renewals
// keep them alive; no renewal for a ttl, or a stopped (SIGSTOP) agent, and the watchdog kills
// them and says which; a renewal re-arms it; two renewals at once leave one agent; a clean
// disarm stops the loops only when no other controller renews.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, describe, it } from 'node:test';
import { AGENT_SHA256, feederId, HostAgent } from '../../src/engines/real/host-agent.js';
import { LocalTransport } from '../../src/transport/local-transport.js';
import { alive } from '../helpers/real-hosts.js';
import { pollUntil } from '../helpers/vfleet-cli.js';

const TTL = 1_500;
const data = mkdtempSync(`${tmpdir()}/vfleet-agent-`);
const t = new LocalTransport('agent-host');
const agent = new HostAgent(t, data);
const me = feederId('controller-a');
let turn = 0;
const renew = (feeder = me, ack = '', startedAck = '') =>
  agent.renew(TTL, `${feeder}.${++turn}`, feeder, 10_000, ack, startedAck);
const children: ChildProcess[] = [];

/** A stand-in instance: a shell whose command line names `marker`, with a child of its own. */
function standIn(name: string, kind: 'vm' | 'sandbox'): ChildProcess {
  const dir = `${data}/instances/${name}`;
  mkdirSync(dir, { recursive: true });
  const marker = kind === 'vm' ? `${dir}/qemu.pid` : `${dir}/rootfs`;
  const child = spawn('/bin/sh', ['-c', 'sleep 600 & wait', marker], { stdio: 'ignore' });
  children.push(child);
  writeFileSync(`${dir}/${kind === 'vm' ? 'qemu' : 'sandbox'}.pid`, `${child.pid}\n`);
  return child;
}

const pidOf = (role: string) => Number(readFileSync(`${data}/agent/${role}.pid`, 'utf8'));

after(async () => {
  for (const role of ['agent', 'watchdog']) {
    try {
      process.kill(pidOf(role), 'SIGCONT');
      process.kill(pidOf(role), 'SIGKILL');
    } catch {
      // not running
    }
  }
  for (const c of children) c.kill('SIGKILL');
  await t.close();
  rmSync(data, { recursive: true, force: true });
});

describe('the vfleet agent on a host', () => {
  it('is installed by its sha256 and starts its two loops on the first renewal', async () => {
    const first = await renew();
    assert.deepEqual([...first.started].sort(), ['agent', 'watchdog']);
    const script = readFileSync(`${data}/bin/vfleet-agent-${AGENT_SHA256.slice(0, 16)}.sh`);
    assert.ok(script.length > 0);
    assert.ok(alive(pidOf('agent')) && alive(pidOf('watchdog')));
    // Reported until acknowledged (an answer lost on the way loses no restart), then forgotten.
    const unacked = await renew();
    assert.deepEqual([...unacked.started].sort(), ['agent', 'watchdog']);
    assert.equal(unacked.startedSum, first.startedSum, 'the same restart, not a new one');
    assert.deepEqual((await renew(me, '', 'not-the-sum')).startedSum, first.startedSum);
    const again = await renew(me, '', first.startedSum);
    assert.deepEqual(again.started, [], 'running loops are not started again');
    assert.equal(again.startedSum, undefined);
    // the beat moves while the agent turns
    const beat = again.beat;
    await pollUntil(
      'the beat moves',
      async () => ((await renew()).beat !== beat ? true : undefined),
      10_000,
    );
  });

  it('keeps instances alive while renewed, kills them a ttl after the last renewal, and says which', async () => {
    const vm = standIn('vm-a', 'vm');
    const box = standIn('box-a', 'sandbox');
    // renewed: still alive after two ttls
    const until = Date.now() + 2 * TTL;
    while (Date.now() < until) {
      await renew();
      await new Promise((r) => setTimeout(r, 150));
    }
    assert.ok(alive(vm.pid) && alive(box.pid), 'renewed instances are never touched');
    const last = Date.now();
    await pollUntil(
      'the watchdog kills both',
      () => (!alive(vm.pid) && !alive(box.pid) ? true : undefined),
      20_000,
    );
    assert.ok(Date.now() - last >= TTL - 300, 'not before the ttl (its clock ticks every 150 ms)');
    const report = await renew();
    assert.deepEqual([...report.fenced].sort(), ['box-a', 'vm-a']);
    const again = await renew();
    assert.deepEqual(again.fenced, report.fenced, 'reported until acknowledged');
    assert.equal(again.fencedSum, report.fencedSum);
    assert.equal((await renew(me, report.fencedSum)).fenced.length, 0, 'acknowledged: forgotten');
    assert.equal((await renew()).fenced.length, 0);
  });

  it('fences a host whose agent hangs (SIGSTOP) although renewals still arrive', async () => {
    // the agent takes up the last renewal within a turn; until then the watchdog still fences
    await pollUntil(
      're-armed',
      async () => ((await renew()) && armed() ? true : undefined),
      10_000,
    );
    const vm = standIn('vm-b', 'vm');
    await renew();
    const agentPid = pidOf('agent');
    const fenced: string[] = [];
    let sum = '';
    process.kill(agentPid, 'SIGSTOP');
    try {
      const stood = (await renew()).beat;
      await pollUntil(
        'the watchdog kills the instance',
        async () => {
          const r = await renew();
          fenced.push(...r.fenced);
          sum = r.fencedSum ?? sum;
          return alive(vm.pid) ? undefined : true;
        },
        20_000,
      );
      assert.equal((await renew()).beat, stood, 'a stopped agent does not beat');
    } finally {
      process.kill(agentPid, 'SIGCONT');
    }
    const last = await renew();
    fenced.push(...last.fenced);
    assert.ok(fenced.includes('vm-b'), JSON.stringify(fenced));
    await renew(me, last.fencedSum ?? sum);
    await pollUntil(
      're-armed',
      async () => ((await renew()) && armed() ? true : undefined),
      10_000,
    );
    // re-armed: a new instance lives on
    const vm2 = standIn('vm-c', 'vm');
    for (let i = 0; i < 8; i++) {
      await renew();
      await new Promise((r) => setTimeout(r, 150));
    }
    assert.ok(alive(vm2.pid), 'renewed again, the watchdog leaves instances alone');
  });

  it('leaves one agent when two renewals start it at once', async () => {
    process.kill(pidOf('agent'), 'SIGKILL');
    const both = await Promise.all([renew(), renew()]);
    assert.ok(both.some((r) => r.started.includes('agent')));
    await pollUntil(
      'one agent loop left',
      () => (countLoops('agent') === 1 ? true : undefined),
      10_000,
    );
  });

  it('disarms on a clean stop only when no other controller renews', async () => {
    const other = feederId('controller-b');
    await renew(other);
    assert.equal(await agent.disarm(TTL, me, 10_000), false, 'another controller renews');
    const loops = [pidOf('agent'), pidOf('watchdog')];
    rmSync(`${data}/agent/feeders/${other}`);
    await renew();
    assert.equal(await agent.disarm(TTL, me, 10_000), true);
    await pollUntil(
      'both loops end',
      () => (loops.every((p) => !alive(p)) ? true : undefined),
      10_000,
    );
    const vm = standIn('vm-d', 'vm');
    await new Promise((r) => setTimeout(r, 2 * TTL));
    assert.ok(alive(vm.pid), 'a disarmed host keeps its instances');
  });
});

/** The watchdog's deadline is ahead of the host's clock. */
function armed(): boolean {
  const deadline = Number(readFileSync(`${data}/agent/deadline`, 'utf8'));
  const [up = '0'] = readFileSync('/proc/uptime', 'utf8').split(' ');
  return deadline > Math.round(Number(up) * 100);
}

/** Live loops of this test's agent script in `role` (their command lines name the data folder). */
function countLoops(role: string): number {
  let n = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const args = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (args[2] === role && args[3] === data && alive(Number(entry))) n++;
    } catch {
      // gone
    }
  }
  return n;
}
