import { Command } from 'commander';
import { engineKeys, setHostDown } from '../../engines/embedded/embedded-engine.js';
import { VfleetError } from '../../model/errors.js';
import { openFleet } from '../fleet-session.js';
import type { Terminal } from '../terminal.js';
import { table } from '../views/table.js';
import { underFleetLock } from './apply-command.js';
import { currentPlan } from './plan-command.js';

/** Hosts with what they hold, instances with host, generation and status, and drift. Exit 0. */
export async function runStatus(
  args: { file: string; json: boolean },
  terminal: Terminal,
): Promise<number> {
  const session = await openFleet(args.file, terminal);
  if (!session) return 1;
  try {
    const recorded = await session.state.readAll();
    const { plan, observed } = await currentPlan(session);
    // As the hosts have them: an instance its answering host no longer runs is `missing`, one it
    // runs stopped is `stopped`, whatever the state last recorded.
    const live = new Map(observed.instances.map((i) => [i.instance, i.status]));
    const snapshot = {
      ...recorded,
      instances: recorded.instances.map((i) =>
        observed.missing?.[i.instance] !== undefined
          ? { ...i, status: 'missing' as const }
          : { ...i, status: live.get(i.instance) ?? i.status },
      ),
    };
    const down = new Set<string>();
    for (const host of session.fleet.hosts) {
      if (
        host.engine === 'embedded' &&
        (await session.connection.redis.exists(engineKeys(session.fleet.name, host.name).down))
      ) {
        down.add(host.name);
      }
    }
    const beats = new Map(snapshot.hosts.map((h) => [h.name, h.lastHeartbeat]));
    const now = Date.now();
    const hosts = session.fleet.hosts.map((h) => {
      const on = snapshot.instances.filter((i) => i.host === h.name);
      return {
        name: h.name,
        engine: h.engine,
        health: down.has(h.name) ? 'failed' : 'ok',
        lastHeartbeat: beats.get(h.name) ?? null,
        instances: on.length,
        vcpus: on.reduce((n, i) => n + i.resources.vcpus, 0),
        memoryMiB: on.reduce((n, i) => n + i.resources.memoryMiB, 0),
      };
    });
    const drift = plan.summary;
    const warnings = await session.factsWarnings();
    if (args.json) {
      terminal.out(
        JSON.stringify(
          {
            formatVersion: '1',
            fleet: session.fleet.name,
            stateVersion: snapshot.version,
            redis: session.connection.url,
            hosts,
            instances: snapshot.instances,
            drift,
            warnings,
          },
          null,
          2,
        ),
      );
      return 0;
    }
    terminal.out(
      `Fleet ${session.fleet.name} (state version ${snapshot.version}, Redis ${session.connection.url})\n`,
    );
    terminal.out(
      table(
        ['HOST', 'ENGINE', 'HEALTH', 'HEARTBEAT', 'INSTANCES', 'VCPUS', 'MEMORY MIB'],
        hosts.map((h) => [
          h.name,
          h.engine,
          h.health,
          h.lastHeartbeat === null
            ? '-'
            : `${Math.max(0, Math.round((now - h.lastHeartbeat) / 1000))}s ago`,
          h.instances,
          h.vcpus,
          h.memoryMiB,
        ]),
      ),
    );
    terminal.out('');
    terminal.out(
      table(
        ['INSTANCE', 'HOST', 'GENERATION', 'STATUS', 'FAILOVER HOST'],
        snapshot.instances.map((i) => [
          i.instance,
          i.host,
          i.generation,
          i.status,
          i.failoverHost ?? '-',
        ]),
      ),
    );
    const changes = drift.create + drift.move + drift.update + drift.patch + drift.destroy;
    const unplaced = plan.unplaceable.length;
    const cannot =
      unplaced === 0
        ? ''
        : ` ${unplaced} instance${unplaced === 1 ? '' : 's'} of the spec cannot be placed.`;
    terminal.out(
      changes === 0 && unplaced === 0
        ? '\nNo drift: the fleet matches the spec.'
        : `\nDrift: ${drift.create} to create, ${drift.move} to move, ${drift.update} to update, ${drift.patch} to patch, ${drift.destroy} to destroy (vfleet plan shows them).${cannot}`,
    );
    if (warnings.length > 0) {
      terminal.out(
        `\nWarnings (the hosts' own facts against the spec):\n${warnings.map((w) => `  ! ${w}`).join('\n')}`,
      );
    }
    return 0;
  } finally {
    await session.close();
  }
}

export function statusCommand(terminal: Terminal, setExit: (code: number) => void): Command {
  return new Command('status')
    .description('hosts, instances with their generations and health, and drift from the spec')
    .argument('[file]', 'the fleet spec (same as -f)')
    .option('-f, --file <path>', 'the fleet spec', 'fleet.yaml')
    .option('--json', 'print JSON (formatVersion 1)', false)
    .action(async (file: string | undefined, o: { file: string; json: boolean }) => {
      setExit(await runStatus({ file: file ?? o.file, json: o.json }, terminal));
    });
}

/**
 * `vfleet host forget <name>`: a host gone for good (no longer in the spec) — its instances are
 * dropped from the state, so the next plan creates them elsewhere. Nothing on the host is
 * touched: vfleet cannot reach it any more.
 */
export async function forgetHost(name: string, file: string, terminal: Terminal): Promise<number> {
  const session = await openFleet(file, terminal);
  if (!session) return 1;
  try {
    if (session.fleet.hosts.some((h) => h.name === name)) {
      throw new VfleetError(
        'host-in-spec',
        `host ${name} is in ${file}: to move its instances off it, set \`drain: true\` on it and apply; forget only a host the spec no longer names`,
      );
    }
    return await underFleetLock(session, terminal, async () => {
      const { instances } = await session.state.readAll();
      const gone = instances.filter((i) => i.host === name).map((i) => i.instance);
      for (const instance of gone) {
        await session.state.deleteInstance(instance);
        await session.state.appendEvent({
          at: Date.now(),
          instance,
          action: 'forget',
          host: name,
          outcome: 'done',
          error: null,
        });
      }
      terminal.out(
        gone.length === 0
          ? `The state has no instances on ${name}; nothing to forget.`
          : `Forgot ${gone.length} instance(s) the state had on ${name}: ${gone.join(', ')}.\n` +
              `The next apply creates them elsewhere; whatever still runs on ${name} is not touched.`,
      );
      return 0;
    });
  } finally {
    await session.close();
  }
}

/** `vfleet host fail|recover <name>` (fault injection, embedded hosts) and `host forget`. */
export function hostCommand(terminal: Terminal, setExit: (code: number) => void): Command {
  const command = new Command('host').description(
    'fault injection for embedded hosts; forget a host that is gone for good',
  );
  command
    .command('forget')
    .description('drop from the state the instances of a host the spec no longer names')
    .argument('<name>', 'the host')
    .option('-f, --file <path>', 'the fleet spec', 'fleet.yaml')
    .action(async (name: string, o: { file: string }) => {
      setExit(await forgetHost(name, o.file, terminal));
    });
  for (const [verb, down] of [
    ['fail', true],
    ['recover', false],
  ] as const) {
    command
      .command(verb)
      .description(
        down ? 'make an embedded host stop answering' : 'bring a failed embedded host back',
      )
      .argument('<name>', 'the host')
      .option('-f, --file <path>', 'the fleet spec', 'fleet.yaml')
      .action(async (name: string, o: { file: string }) => {
        const session = await openFleet(o.file, terminal);
        if (!session) return setExit(1);
        try {
          const host = session.fleet.hosts.find((h) => h.name === name);
          if (!host) throw new VfleetError('unknown-host', `no host ${name} in ${o.file}`);
          if (host.engine !== 'embedded') {
            throw new VfleetError(
              'not-embedded',
              `host ${name} uses the ${host.engine} engine; only embedded hosts can be failed on purpose`,
            );
          }
          await setHostDown(session.connection.redis, session.fleet.name, name, down);
          terminal.out(down ? `Host ${name} no longer answers.` : `Host ${name} answers again.`);
          setExit(0);
        } finally {
          await session.close();
        }
      });
  }
  return command;
}

export function forceUnlockCommand(terminal: Terminal, setExit: (code: number) => void): Command {
  return new Command('force-unlock')
    .description('remove the fleet lock of an apply that is gone')
    .argument('<id>', 'the lock id the refused apply printed')
    .option('-f, --file <path>', 'the fleet spec', 'fleet.yaml')
    .action(async (id: string, o: { file: string }) => {
      const session = await openFleet(o.file, terminal);
      if (!session) return setExit(1);
      try {
        const result = await session.state.forceUnlock(id);
        if (result.ok) {
          terminal.out(`Removed lock ${id} (pid ${result.holder.pid} on ${result.holder.host}).`);
          setExit(0);
        } else {
          terminal.err(
            result.holder
              ? `vfleet: the lock is held under ${result.holder.id}, not ${id}.`
              : 'vfleet: no lock is held.',
          );
          setExit(1);
        }
      } finally {
        await session.close();
      }
    });
}
