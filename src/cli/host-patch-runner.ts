// `vfleet host patch`: the rollout of docs/patching.md, "Hosts". The waves (app/host-patch.ts
// over plan/host-rollout.ts) shown like a plan and approved; then for each wave: drain its hosts
// (app/hosts.ts's drainHost, and the apply that empties them — live migration where the engines
// can), patch each host (HostEngine.patchHost), undrain, wait until healthy, next wave. A failure
// stops the rollout with the wave's hosts left drained, and says so.
import { hostRolloutOf, patchDrainedHost, waitHostHealthy, waveLoses } from '../app/host-patch.js';
import { drainHost } from '../app/hosts.js';
import { VfleetError } from '../model/errors.js';
import type { HostWave } from '../plan/host-rollout.js';
import { takeoverMsFrom } from '../queue/worker-lock.js';
import { ask, runApply } from './apply-runner.js';
import { withSession } from './open-session.js';
import type { Terminal } from './terminal.js';
import {
  hostRolloutText,
  type LeftAs,
  refusedRolloutText,
  waveFailedText,
} from './views/host-rollout-view.js';
import { jsonDocument } from './views/json.js';

export interface HostPatchArgs {
  readonly file: string;
  readonly names: readonly string[];
  readonly all: boolean;
  readonly autoApprove: boolean;
  readonly json: boolean;
  readonly rebootMs: number;
  readonly healthyTimeoutMs: number;
  readonly operator: string;
}

interface WaveResult {
  readonly hosts: readonly string[];
  readonly levels: Readonly<Record<string, number>>;
  readonly ok: boolean;
  readonly failedAt?: string;
}

export async function runHostPatch(args: HostPatchArgs, terminal: Terminal): Promise<number> {
  if (args.all === args.names.length > 0) {
    throw new VfleetError('usage', 'name the hosts to patch, or --all (not both)');
  }
  if (args.json && !args.autoApprove) {
    throw new VfleetError('usage', '--json needs --auto-approve: no question is asked in JSON');
  }
  let waves: readonly HostWave[] = [];
  const planned = await withSession(args.file, terminal, async (session) => {
    const rollout = await hostRolloutOf(session, args.names);
    if (!rollout.ok) {
      terminal.err(refusedRolloutText(rollout.host, rollout.unplaceable));
      return 1;
    }
    waves = rollout.waves;
    const { tolerate, domain } = session.fleet.failover;
    if (!args.json) terminal.out(hostRolloutText(rollout, tolerate, domain));
    const words = {
      verb: 'Host patch',
      doing: 'patching hosts',
      ask: 'Patch these hosts?',
    } as const;
    return args.autoApprove || (await ask(words, terminal)) ? 0 : 1;
  });
  if (planned !== 0) return planned;
  // The drains' applies speak on standard error when standard output carries the JSON.
  const applyTerminal: Terminal = args.json
    ? { out: (t) => terminal.err(t), err: (t) => terminal.err(t), isTTY: false }
    : terminal;
  const say = (text: string) => (args.json ? terminal.err(text) : terminal.out(text));
  const results: WaveResult[] = [];
  for (const [i, wave] of waves.entries()) {
    const result = await runWave(args, wave, i + 1, applyTerminal, terminal, say);
    results.push(result);
    if (!result.ok) break;
  }
  const ok = results.length === waves.length && results.every((r) => r.ok);
  if (args.json) terminal.out(jsonDocument({ ok, planned: waves, waves: results }));
  else if (ok)
    terminal.out(
      `Patched ${results.flatMap((r) => r.hosts).length} host(s) in ${results.length} wave(s).`,
    );
  return ok ? 0 : 1;
}

async function runWave(
  args: HostPatchArgs,
  wave: HostWave,
  n: number,
  applyTerminal: Terminal,
  terminal: Terminal,
  say: (text: string) => void,
): Promise<WaveResult> {
  const failed = (
    step: string,
    levels: Record<string, number> = {},
    left: LeftAs = 'drained',
  ): WaveResult => {
    terminal.err(waveFailedText(n, wave.hosts, step, left));
    return { hosts: wave.hosts, levels, ok: false, failedAt: step };
  };
  // Earlier waves moved instances: the wave is asked again of the state as it is now.
  const fits = await withSession(args.file, terminal, async (session) => {
    const lost = await waveLoses(session, wave.hosts);
    if (lost.length === 0) return 0;
    terminal.err(
      `vfleet: with ${wave.hosts.join(', ')} drained now, nothing could place ${lost.join(', ')}.`,
    );
    return 1;
  });
  if (fits !== 0) return failed('the check before its drain', {}, 'undrained');
  say(`Wave ${n}: draining ${wave.hosts.join(', ')}.`);
  const marked = await withSession(args.file, terminal, async (session) => {
    for (const host of wave.hosts) await drainHost(session, host, true, args.operator);
    return 0;
  });
  if (marked !== 0) return failed('the drain');
  const applied = await runApply(
    {
      target: args.file,
      spec: args.file,
      autoApprove: true,
      concurrency: 4,
      externalWorkers: false,
      takeoverMs: takeoverMsFrom(process.env),
      json: args.json,
    },
    applyTerminal,
  );
  if (applied !== 0) return failed('the apply that drains them');
  const emptied = await withSession(args.file, terminal, async (session) => {
    const { instances } = await session.state.readAll();
    const left = instances.filter((i) => wave.hosts.includes(i.host)).map((i) => i.instance);
    if (left.length === 0) return 0;
    terminal.err(`vfleet: the drain left ${left.join(', ')} on ${wave.hosts.join(', ')}.`);
    return 1;
  });
  if (emptied !== 0) return failed('the drain (instances left on its hosts)');
  const levels: Record<string, number> = {};
  const patched = await withSession(args.file, terminal, async (session) => {
    const done = await Promise.all(
      wave.hosts.map((h) => patchDrainedHost(session, h, args.rebootMs)),
    );
    wave.hosts.forEach((h, i) => {
      levels[h] = done[i]?.level ?? 0;
    });
    return 0;
  });
  if (patched !== 0) return failed('the patch', levels);
  say(
    `Wave ${n}: patched ${wave.hosts.map((h) => `${h} (level ${levels[h]})`).join(', ')}; undraining.`,
  );
  const healthy = await withSession(args.file, terminal, async (session) => {
    for (const host of wave.hosts) await drainHost(session, host, false, args.operator);
    for (const host of wave.hosts) {
      const h = await waitHostHealthy(session, host, args.healthyTimeoutMs);
      if (!h.ok) {
        terminal.err(`vfleet: ${host} is ${h.health}, not ok, after ${args.healthyTimeoutMs} ms.`);
        return 1;
      }
    }
    return 0;
  });
  if (healthy !== 0) return failed('waiting until healthy', levels, 'unhealthy');
  return { hosts: wave.hosts, levels, ok: true };
}
