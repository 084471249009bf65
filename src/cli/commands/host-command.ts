// `vfleet host forget|fail|partition|recover|fenced|drain|undrain <name>` (app/hosts.ts), and
// `vfleet host patch [names…|--all]` (cli/host-patch-runner.ts).

import { userInfo } from 'node:os';
import { Command } from 'commander';
import { drainHost, fenceHost, forgetHost, injectFault } from '../../app/hosts.js';
import { takeoverMsFrom } from '../../queue/worker-lock.js';
import { parseDuration } from '../duration.js';
import { withSession } from '../open-session.js';
import type { Terminal } from '../terminal.js';
import { jsonDocument } from '../views/json.js';
import { lockedMessage, takeoverMessage } from '../views/lock-view.js';

export function hostCommand(terminal: Terminal, setExit: (code: number) => void): Command {
  const command = new Command('host').description(
    "fault injection for embedded hosts, an operator's fence, maintenance (drain); forget a host that is gone for good",
  );
  // Every subcommand names one host and reads the spec.
  const sub = (name: string, description: string): Command =>
    command
      .command(name)
      .description(description)
      .argument('<name>', 'the host')
      .option('-f, --file <path>', 'the fleet spec', 'fleet.yaml');
  const JSON_HELP = 'print JSON (formatVersion 1)';
  sub('forget', 'drop from the state the instances of a host the spec no longer names')
    .option('--json', JSON_HELP, false)
    .action(async (name: string, o: { file: string; json: boolean }) => {
      setExit(
        await withSession(o.file, terminal, async (session) => {
          const fleet = session.fleet.name;
          const result = await forgetHost(session, name, (gone) =>
            terminal.err(takeoverMessage(fleet, gone)),
          );
          if (!result.ok) {
            terminal.err(lockedMessage(fleet, result.holder));
            return 1;
          }
          const gone = result.forgotten;
          if (o.json) {
            terminal.out(jsonDocument({ host: name, forgotten: gone }));
            return 0;
          }
          terminal.out(
            gone.length === 0
              ? `The state has no instances on ${name}; nothing to forget.`
              : `Forgot ${gone.length} instance(s) the state had on ${name}: ${gone.join(', ')}.\n` +
                  `The next apply creates them elsewhere; whatever still runs on ${name} is not touched.`,
          );
          return 0;
        }),
      );
    });
  const faults = [
    [
      'fail',
      'crash an embedded host: it stops answering and its instances die with it',
      'crashed: it no longer answers and its instances stopped',
    ],
    [
      'partition',
      'cut an embedded host off from the control plane: its instances keep running, it cannot be reached and sends no heartbeats',
      'is cut off from the control plane: its instances keep running, it cannot be reached',
    ],
    [
      'recover',
      'bring a failed or partitioned embedded host back (and withdraw an operator fence)',
      'answers again',
    ],
  ] as const;
  for (const [fault, description, done] of faults) {
    sub(fault, description)
      .option('--json', JSON_HELP, false)
      .action(async (name: string, o: { file: string; json: boolean }) => {
        setExit(
          await withSession(o.file, terminal, async (session) => {
            await injectFault(session, name, fault);
            terminal.out(o.json ? jsonDocument({ host: name, fault }) : `Host ${name} ${done}.`);
            return 0;
          }),
        );
      });
  }
  sub(
    'fenced',
    'assert that a host is off (powered down, its instances dead): the controller restarts its instances elsewhere at once instead of waiting for its lease to age. vfleet cannot check this: if the host is in fact running, its instances run twice',
  )
    .option('--json', JSON_HELP, false)
    .action(async (name: string, o: { file: string; json: boolean }) => {
      setExit(
        await withSession(o.file, terminal, async (session) => {
          await fenceHost(session, name, operatorName());
          terminal.out(
            o.json
              ? jsonDocument({ host: name, fenced: true })
              : `Host ${name} is fenced: its instances may restart elsewhere now. \`vfleet host recover ${name}\` withdraws it.`,
          );
          return 0;
        }),
      );
    });
  sub(
    'drain',
    'drain a host (maintenance): nothing new lands on it and what runs there moves off — running VMs by live migration where the engines can — as if the spec said drain: true, until `vfleet host undrain`; then applies the plan that empties it',
  )
    .option('--auto-approve', 'apply without asking', false)
    .option(
      '--no-apply',
      'only mark it draining (the controller with --auto-apply, or vfleet apply, empties it)',
    )
    .action(async (name: string, o: { file: string; autoApprove: boolean; apply: boolean }) => {
      const marked = await withSession(o.file, terminal, async (session) => {
        await drainHost(session, name, true, operatorName());
        terminal.out(
          `Host ${name} is draining: nothing new lands on it, and what runs there moves off.`,
        );
        return 0;
      });
      if (marked !== 0 || !o.apply) return setExit(marked);
      const { runApply } = await import('../apply-runner.js');
      setExit(
        await runApply(
          {
            target: o.file,
            spec: o.file,
            autoApprove: o.autoApprove,
            concurrency: 4,
            externalWorkers: false,
            takeoverMs: takeoverMsFrom(process.env),
          },
          terminal,
        ),
      );
    });
  sub(
    'undrain',
    'end a drain made with `vfleet host drain`: the host takes instances again (nothing moves back by itself)',
  )
    .option('--json', JSON_HELP, false)
    .action(async (name: string, o: { file: string; json: boolean }) => {
      setExit(
        await withSession(o.file, terminal, async (session) => {
          await drainHost(session, name, false, operatorName());
          terminal.out(
            o.json
              ? jsonDocument({ host: name, draining: false })
              : `Host ${name} is no longer drained by an operator (a spec's drain: true still holds).`,
          );
          return 0;
        }),
      );
    });
  command
    .command('patch')
    .description(
      'patch hosts, drained first, in waves the failover policy tolerates (one rack, or `tolerate` hosts, at a time): drain, patch and reboot, undrain, wait until healthy, next wave (docs/patching.md, "Hosts"); embedded hosts only for now',
    )
    .argument('[names...]', 'the hosts (or --all)')
    .option('-f, --file <path>', 'the fleet spec', 'fleet.yaml')
    .option('--all', 'every host of the spec', false)
    .option('--auto-approve', 'patch without asking', false)
    .option('--reboot <duration>', "an embedded host's reboot latency", '200ms')
    .option('--healthy-timeout <duration>', 'how long a host may take to be healthy again', '60s')
    .option('--json', `${JSON_HELP}; needs --auto-approve`, false)
    .action(async (names: string[], o: HostPatchOptions) => {
      const { runHostPatch } = await import('../host-patch-runner.js');
      setExit(
        await runHostPatch(
          {
            file: o.file,
            names,
            all: o.all,
            autoApprove: o.autoApprove,
            json: o.json,
            rebootMs: parseDuration(o.reboot, '--reboot'),
            healthyTimeoutMs: parseDuration(o.healthyTimeout, '--healthy-timeout'),
            operator: operatorName(),
          },
          terminal,
        ),
      );
    });
  return command;
}

interface HostPatchOptions {
  readonly file: string;
  readonly all: boolean;
  readonly autoApprove: boolean;
  readonly json: boolean;
  readonly reboot: string;
  readonly healthyTimeout: string;
}

function operatorName(): string {
  try {
    return userInfo().username;
  } catch {
    return 'an operator';
  }
}
