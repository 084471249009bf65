// The controller's contract (controller.ts): where it reads the spec, its options, what it
// reports after each reconcile, and what a caller holds of a running one.
import type { ApplyOptions, ApplyResult } from '../app/apply.js';
import type { FleetSession, SpecRead, ValidSpec } from '../app/session.js';
import type { LivenessPolicy } from '../model/host-health.js';
import type { Plan } from '../model/plan.js';
import type { SourceRevision, SyncHealth, SyncStatus } from '../model/source.js';
import type { NotifyOptions } from './notify.js';

/** Where the controller reads the spec: a file today, a git repository later. */
export interface SpecSource {
  /** Names the source in events (`fleet.yaml`, later a URL and a commit). */
  readonly describe: string;
  /** Something that changes whenever the spec may have (cheap: asked every tick). */
  signature(): string;
  read(): SpecRead;
  /** The revision `read` reads (git: the commit); absent: the spec file's own (app/source.ts). */
  revision?(): SourceRevision | undefined;
  /** Why the source could not be read last time (git: a fetch failed), or undefined. */
  lastError?(): string | undefined;
  /** Look for a new revision now (a push webhook, `vfleet reconcile --now`): resolves once a
   *  fetch begun after the call has ended (requests that come together share one). */
  fetchNow?(): Promise<void>;
}

export interface ControllerOptions {
  readonly policy: LivenessPolicy;
  /** How often the leader plans even when nothing happened (`--interval`, default 30 s). */
  readonly intervalMs: number;
  /** Apply every change (self-heal, roll out spec changes); without, only restarts run. */
  readonly autoApply: boolean;
  /** With autoApply: also destroy instances gone from the spec (default off, as Argo CD's prune). */
  readonly prune?: boolean;
  /** A sync (the apply of a reconcile) running longer is aborted (default 10 min). */
  readonly syncTimeoutMs?: number;
  /** Webhooks to notify (controller/notify.ts); none by default. */
  readonly notify?: NotifyOptions;
  /** How often a tick runs (default: a quarter of the ttl, at most 1 s). */
  readonly tickMs?: number;
  readonly concurrency: number;
  readonly takeoverMs: number;
  /** `vfleet worker`s serve the queues: the controller runs no workers itself. */
  readonly externalWorkers: boolean;
  readonly clock?: () => number;
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
  /** Every event, as it is also appended to the fleet's stream. */
  readonly onEvent?: (event: ControllerEvent) => void;
  /** Every reconcile's outcome and duration, for the HTTP server's metrics (src/http/). */
  readonly onReconcile?: (report: ReconcileReport) => void;
  /**
   * Run the embedded hosts' emulated agents in this process (default true: nothing else runs
   * them). The simulation runs them as the hosts' own processes, on the hosts' own clocks.
   */
  readonly runAgents?: boolean;
  /** How a plan is run (default: apply through the host queues, app/apply.ts). */
  readonly executor?: Executor;
  /** Opens a session on a spec (default: app/session.ts's, on REDIS_URL or the private Redis). */
  readonly openSession?: (spec: ValidSpec) => Promise<FleetSession>;
  /** A random id (default: host:pid:random). */
  readonly id?: string;
  /** Asks the caller for a tick now (run.ts): a fetch it asked for has ended. */
  readonly nudge?: () => void;
}

/** What a reconcile asks of the executor: run the fresh plan (narrowed by `select`), fenced. */
export interface ExecuteOptions {
  readonly leaderToken: number;
  readonly select?: (plan: Plan) => Plan;
  readonly onEvent: NonNullable<ApplyOptions['onEvent']>;
  /** Aborts the sync: a newer spec superseded it, or it ran past its time limit. */
  readonly signal?: AbortSignal;
}
export type Executor = (session: FleetSession, options: ExecuteOptions) => Promise<ApplyResult>;

export interface ControllerEvent {
  readonly at: number;
  readonly type: string;
  readonly [field: string]: unknown;
}

/** How one reconcile went: when it started, how long it took, the sync status it left. */
export interface ReconcileReport {
  readonly at: number;
  readonly durationMs: number;
  /** The last sync status and health it published (Unknown: none, as when the lock was held). */
  readonly status: SyncStatus;
  readonly health: SyncHealth;
}

/** One controller, ticked by its caller: the loop (startController) or the simulation. */
export interface Controller {
  readonly id: string;
  /** One tick; with `awaitReconcile` also the reconcile it starts. */
  tick(awaitReconcile?: boolean): Promise<void>;
  /** The fencing token while leader, else null. */
  token(): number | null;
  /** Waits for a reconcile in flight, gives up the lease if held, closes the session. */
  close(): Promise<void>;
  /** Drops the session's Redis clients now (a stop while Redis does not answer). */
  abandon(): void;
  /** The session on the current spec (a new one when the spec changes). */
  session(): FleetSession;
}
