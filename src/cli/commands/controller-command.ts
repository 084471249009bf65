// `vfleet controller [-f fleet.yaml | --git URL] [--lease-ttl 10s] [--grace 4s] [--interval 30s]
// [--auto-apply] [--http HOST:PORT [--webhook-secret-file PATH]]`: the long-running reconciler
// (controller/controller.ts) until SIGTERM or SIGINT. Any number may run per fleet; one leads,
// the others stand by. With --http, its metrics, probes, queue board and reports (src/http/) are
// served too, and with --git and a webhook secret a forge's push webhook (`POST /hooks/git`).
import { statSync } from 'node:fs';
import { Command } from 'commander';
import { readValidSpec } from '../../app/session.js';
import { requestFetch } from '../../app/sync.js';
import type { ControllerEvent, SpecSource } from '../../controller/controller.js';
import { GitSpecSource, gitCacheDir, normalizeGitUrl } from '../../controller/git-source.js';
import {
  checkNotifyUrl,
  NOTIFY_EVENTS,
  type NotifyEvent,
  type NotifyOptions,
} from '../../controller/notify.js';
import { type RunningController, startController } from '../../controller/run.js';
import { ControllerMetrics } from '../../http/controller-metrics.js';
import { HttpError } from '../../http/http-error.js';
import type { RunningHttpServer, ServedProcess } from '../../http/server.js';
import { VfleetError } from '../../model/errors.js';
import { DEFAULT_LIVENESS } from '../../model/host-health.js';
import { takeoverMsFrom } from '../../queue/worker-lock.js';
import { parseDuration } from '../duration.js';
import {
  type HttpArgs,
  httpSettings,
  publishedFleetSync,
  startHttp,
  withHttpOptions,
} from '../http-options.js';
import { readSpecOrReport } from '../open-session.js';
import { secretOption } from '../secret-option.js';
import type { Terminal } from '../terminal.js';
import { renderValidate } from '../views/diagnostics-view.js';
import { eventJson, eventLine } from '../views/events-view.js';
import { httpListeningJson, httpListeningLine } from '../views/http-view.js';

/** The spec file, re-read when its size or modification time changes. */
export function fileSpecSource(file: string): SpecSource {
  return {
    describe: file,
    signature() {
      try {
        const s = statSync(file);
        return `${s.mtimeMs}:${s.size}:${s.ino}`;
      } catch {
        return 'unreadable';
      }
    },
    read: () => readValidSpec(file),
  };
}

function notifyOptions(args: ControllerArgs): NotifyOptions {
  const urls = args.notify.map(checkNotifyUrl);
  const events = args.notifyOn
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean);
  for (const e of events)
    if (!(NOTIFY_EVENTS as readonly string[]).includes(e))
      throw new VfleetError(
        'usage',
        `--notify-on: ${JSON.stringify(e)} is not one of ${NOTIFY_EVENTS.join(', ')}`,
      );
  return {
    urls,
    events: events as NotifyEvent[],
    secret: secretOption({
      option: '--notify-secret-file',
      ...(args.notifySecretFile ? { file: args.notifySecretFile } : {}),
      variable: 'VFLEET_NOTIFY_SECRET',
      env: process.env,
    }),
  };
}

/**
 * The push webhook's secret (`--webhook-secret-file`, VFLEET_WEBHOOK_SECRET), checked now;
 * undefined when `/hooks/git` is not served — never without a secret, and only by a controller
 * that follows a git repository and serves HTTP.
 */
function webhookSecret(
  args: ControllerArgs,
  terminal: Terminal,
): (() => string | undefined) | undefined {
  if (args.webhookSecretFile !== undefined) {
    if (args.http === undefined)
      throw new VfleetError('usage', '--webhook-secret-file needs --http (where forges POST)');
    if (args.git === undefined)
      throw new VfleetError('usage', '--webhook-secret-file needs --git (what a push changes)');
  } else if (!process.env.VFLEET_WEBHOOK_SECRET || args.http === undefined) return undefined;
  else if (args.git === undefined) {
    terminal.err(
      'Warning: VFLEET_WEBHOOK_SECRET is set, but only a controller following --git serves /hooks/git',
    );
    return undefined;
  }
  const secret = secretOption({
    option: '--webhook-secret-file',
    ...(args.webhookSecretFile ? { file: args.webhookSecretFile } : {}),
    variable: 'VFLEET_WEBHOOK_SECRET',
    env: process.env,
  });
  secret(); // a file that cannot be read, or is empty, stops the command now
  return () => {
    try {
      return secret();
    } catch {
      return undefined; // answered 503: the file went away or was emptied
    }
  };
}

interface ControllerArgs extends HttpArgs {
  readonly file: string;
  readonly git?: string;
  readonly ref: string;
  readonly path: string;
  readonly prune: boolean;
  readonly syncTimeout: string;
  readonly notify: string[];
  readonly notifyOn: string;
  readonly notifySecretFile?: string;
  readonly webhookSecretFile?: string;
  readonly leaseTtl: string;
  readonly grace?: string;
  readonly interval: string;
  readonly autoApply: boolean;
  readonly concurrency: number;
  readonly externalWorkers: boolean;
  readonly json: boolean;
}

export async function runController(args: ControllerArgs, terminal: Terminal): Promise<number> {
  const ttlMs = parseDuration(args.leaseTtl, '--lease-ttl');
  const graceMs =
    args.grace === undefined
      ? Math.round((ttlMs * DEFAULT_LIVENESS.graceMs) / DEFAULT_LIVENESS.ttlMs)
      : parseDuration(args.grace, '--grace');
  const intervalMs = parseDuration(args.interval, '--interval');
  const syncTimeoutMs = parseDuration(args.syncTimeout, '--sync-timeout');
  const notify = notifyOptions(args);
  if (notify.urls.length > 0 && notify.secret() === undefined)
    terminal.err(
      'Warning: notifications are not signed: set VFLEET_NOTIFY_SECRET or --notify-secret-file',
    );
  const http = httpSettings(args, process.env);
  const hookSecret = webhookSecret(args, terminal);
  let source: SpecSource;
  let git: GitSpecSource | undefined;
  if (args.git) {
    const url = normalizeGitUrl(args.git, process.cwd());
    git = new GitSpecSource({
      url,
      ref: args.ref,
      path: args.path,
      cacheDir: gitCacheDir(process.cwd(), url, args.ref),
      intervalMs,
    });
    await git.start();
    // The controller starts from a commit whose spec validates; later ones that do not are
    // reported (Degraded) and leave the fleet as it is.
    const first = git.read();
    if (!first.ok) {
      git.close();
      terminal.err(
        renderValidate('text', {
          file: first.file,
          diagnostics: first.diagnostics,
          fleet: undefined,
        }),
      );
      return 1;
    }
    source = git;
  } else {
    if (!readSpecOrReport(args.file, terminal)) return 1;
    source = fileSpecSource(args.file);
  }
  const show = (event: ControllerEvent) =>
    terminal.out(args.json ? eventJson('', event) : eventLine(event));
  // The server listens before the controller starts (a port in use stops the command before it
  // touches the fleet), and answers 503 until the controller has opened the fleet.
  let controller: RunningController | undefined;
  let metrics: ControllerMetrics | undefined;
  let server: RunningHttpServer | undefined;
  if (http) {
    try {
      server = await startHttp(
        http,
        servedController(() => controller, ttlMs),
        (l) => terminal.err(l),
        hookSecret && {
          secret: hookSecret,
          ref: args.ref,
          async onPush(push) {
            const session = controller?.session();
            if (!session) throw new HttpError(503, 'starting: the fleet is not open yet');
            show((await requestFetch(session, push, Date.now())) as ControllerEvent);
            controller?.nudge(); // the leader, if this is it, sees the request at once
          },
        },
      );
    } catch (e) {
      git?.close();
      throw e;
    }
    metrics = new ControllerMetrics(server.metrics.registry);
    terminal.out(
      args.json
        ? httpListeningJson(server.url, http.queuesWritable, hookSecret !== undefined)
        : httpListeningLine(
            'vfleet controller',
            server.url,
            http.queuesWritable,
            hookSecret !== undefined,
          ),
    );
  }
  try {
    controller = await startController(source, {
      policy: { ttlMs, graceMs },
      intervalMs,
      autoApply: args.autoApply,
      prune: args.prune,
      syncTimeoutMs,
      notify,
      concurrency: args.concurrency,
      takeoverMs: takeoverMsFrom(process.env, undefined),
      externalWorkers: args.externalWorkers,
      env: process.env,
      cwd: process.cwd(),
      onEvent: (event) => {
        show(event);
        metrics?.onEvent(event);
      },
      onReconcile: (report) => metrics?.onReconcile(report),
    });
  } catch (e) {
    await server?.close();
    git?.close();
    throw e;
  }
  server?.warm();
  if (!args.json)
    terminal.out(
      `vfleet controller ${controller.id}: ${source.describe}, lease ttl ${ttlMs} ms, grace ${graceMs} ms, interval ${intervalMs} ms, ${args.autoApply ? `auto-apply${args.prune ? ' with prune' : ''}` : 'restarts only (drift is reported)'}`,
    );
  const signalled = new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  await Promise.race([signalled, controller.done]);
  // The server reads through the controller's session: it closes first.
  await server?.close();
  await controller.stop();
  git?.close();
  return 0;
}

/**
 * The controller as the HTTP server sees it: its session, the fleet's sync as the leader
 * published it, and ready while it ticks — one that has not ticked for a lease ttl holds no
 * lease any more.
 */
function servedController(
  controller: () => RunningController | undefined,
  ttlMs: number,
): ServedProcess {
  return {
    session: () => controller()?.session(),
    sync: publishedFleetSync,
    notReady() {
      const c = controller();
      const last = c?.lastTickAt() ?? null;
      if (c === undefined || last === null) return 'starting: the controller has not ticked yet';
      const since = Date.now() - last;
      const bound = Math.max(ttlMs, 5 * c.tickMs);
      return since > bound ? `the controller has not ticked for ${since} ms` : undefined;
    },
  };
}

export function controllerCommand(terminal: Terminal, setExit: (code: number) => void): Command {
  return withHttpOptions(new Command('controller'))
    .description(
      'keep the fleet converged: watch host leases, restart a lost host’s instances on their failover hosts, reconcile the spec (a daemon; any number per fleet, one leads)',
    )
    .option('-f, --file <path>', 'the fleet spec', 'fleet.yaml')
    .option('--lease-ttl <duration>', 'a host whose lease is older than this is suspect', '10s')
    .option(
      '--grace <duration>',
      'after the ttl, how long a host is suspect before lost (default: 0.4 × the ttl, 4s at the default ttl)',
    )
    .option('--interval <duration>', 'plan (and fetch a git source) at least this often', '30s')
    .option(
      '--git <url-or-path>',
      'follow the spec in a git repository (fetched with the git CLI) instead of -f',
    )
    .option('--ref <branch>', 'with --git: the branch or tag to follow', 'main')
    .option('--path <file>', 'with --git: the spec inside the repository', 'fleet.yaml')
    .option(
      '--prune',
      'with --auto-apply: also destroy instances gone from the spec (off: they are reported)',
      false,
    )
    .option('--sync-timeout <duration>', 'abort a sync (apply) that runs longer than this', '10m')
    .option(
      '--notify <url>',
      'POST a signed JSON notification to this webhook (repeatable; secret: VFLEET_NOTIFY_SECRET)',
      (v: string, all: string[]) => [...all, v],
      [] as string[],
    )
    .option(
      '--notify-on <events>',
      `which (comma-separated): ${NOTIFY_EVENTS.join(', ')}`,
      NOTIFY_EVENTS.join(','),
    )
    .option('--notify-secret-file <path>', "the notifications' secret in a file (its first line)")
    .option(
      '--webhook-secret-file <path>',
      "with --git and --http: serve POST /hooks/git, a forge's push webhook signed with this secret (its first line; or VFLEET_WEBHOOK_SECRET)",
    )
    .option(
      '--auto-apply',
      'apply every change (self-heal, spec roll-outs); without it only restarts run and drift is reported',
      false,
    )
    .option('--concurrency <n>', 'jobs each host runs at once', (v) => Number.parseInt(v, 10), 4)
    .option(
      '--external-workers',
      '`vfleet worker` processes serve the queues: run none here',
      false,
    )
    .option('--json', 'events as JSON lines (formatVersion 1)', false)
    .action(async (o: Omit<ControllerArgs, 'file'> & { file: string }) => {
      if (!Number.isInteger(o.concurrency) || o.concurrency < 1)
        throw new VfleetError('usage', '--concurrency takes a whole number ≥ 1');
      setExit(await runController(o, terminal));
    });
}
