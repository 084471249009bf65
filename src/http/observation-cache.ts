// The fleet's observation (app/fleet-observation.ts: a refresh of every host and the three
// audits) for the metrics, kept for a few seconds, so that a scrape of a big fleet costs a few
// Redis reads and not a refresh: a scrape gets the last figures and, when they are older than
// `maxAgeMs`, the next observation is made once that scrape has been answered
// (stale-while-revalidate: it would otherwise take the CPU from the very scrape that asked); only
// the first scrape waits. Only the figures the metrics show are kept — a whole observation holds
// every instance's packages and every patch row, and a heap that large makes every scrape's
// garbage collection slow. A report page gets a whole observation made for it (or the one being
// made). One observation is made at a time, whoever asks.
import type { FleetObservation, ObservedStatus } from '../app/fleet-observation.js';
import type { FleetSession } from '../app/session.js';
import type { AuditSummary } from '../audit/report.js';

/** What the metrics show of an observation. */
export interface FleetFigures {
  /** Epoch ms when it was observed. */
  readonly at: number;
  readonly specHash: string;
  readonly instancesByStatus: Readonly<Record<ObservedStatus, number>>;
  readonly summary: AuditSummary;
  readonly pools: ReadonlyArray<{
    readonly pool: string;
    readonly used: number;
    readonly needed: number;
    readonly entitlement: number;
    readonly shortfall: number;
  }>;
  readonly baselines: ReadonlyArray<{
    readonly baseline: string;
    readonly compliant: number;
    readonly nonCompliant: number;
    readonly pendingReboot: number;
    readonly failed: number;
    readonly notApplicable: number;
  }>;
}

function figuresOf(o: FleetObservation): FleetFigures {
  return {
    at: o.at,
    specHash: o.specHash,
    instancesByStatus: o.instancesByStatus,
    summary: o.report.summary,
    pools: (o.report.licenses?.pools ?? []).map(
      ({ pool, used, needed, entitlement, shortfall }) => ({
        pool,
        used,
        needed,
        entitlement,
        shortfall,
      }),
    ),
    baselines: (o.report.patches?.baselines ?? []).map(
      ({ baseline, compliant, nonCompliant, pendingReboot, failed, notApplicable }) => ({
        baseline,
        compliant,
        nonCompliant,
        pendingReboot,
        failed,
        notApplicable,
      }),
    ),
  };
}

export interface ObservationCacheOptions {
  readonly observe: (session: FleetSession) => Promise<FleetObservation>;
  /** Older than this, a scrape starts the next observation. */
  readonly maxAgeMs: number;
  readonly clock?: () => number;
}

export class ObservationCache {
  private last: { session: FleetSession; figures: FleetFigures } | undefined;
  private inFlight: { session: FleetSession; promise: Promise<FleetObservation> } | undefined;
  /** Observations that failed since the process started (a counter says so). */
  failures = 0;
  /** How long the last observation took (ms). */
  lastDurationMs = 0;
  private readonly clock: () => number;

  constructor(private readonly options: ObservationCacheOptions) {
    this.clock = options.clock ?? Date.now;
  }

  /** For a scrape: the last figures of this session (the first observation is waited for). */
  async latest(session: FleetSession): Promise<FleetFigures> {
    if (this.last?.session === session) return this.last.figures;
    await this.observe(session);
    // Set by observe() for this session, unless the session changed meanwhile.
    if (this.last?.session !== session) throw new Error('the spec changed during the observation');
    return this.last.figures;
  }

  /** For a report page: an observation made now (or the one being made). */
  fresh(session: FleetSession): Promise<FleetObservation> {
    return this.observe(session);
  }

  /**
   * After a scrape was answered: the next observation, if the last is older than `maxAgeMs`. A
   * failure is counted by observe(); the scrapes keep the last good figures.
   */
  refreshIfStale(session: FleetSession): void {
    if (this.inFlight !== undefined) return;
    const last = this.last?.session === session ? this.last.figures : undefined;
    if (last === undefined || this.clock() - last.at > this.options.maxAgeMs)
      this.observe(session).catch(() => undefined);
  }

  /** Starts one now (a server warming up) without waiting for it. */
  warm(session: FleetSession): void {
    this.observe(session).catch(() => undefined);
  }

  private observe(session: FleetSession): Promise<FleetObservation> {
    if (this.inFlight?.session === session) return this.inFlight.promise;
    const started = this.clock();
    const promise = this.options
      .observe(session)
      .then((observation) => {
        this.last = { session, figures: figuresOf(observation) };
        this.lastDurationMs = this.clock() - started;
        return observation;
      })
      .catch((e: unknown) => {
        this.failures++;
        throw e;
      })
      .finally(() => {
        if (this.inFlight?.promise === promise) this.inFlight = undefined;
      });
    this.inFlight = { session, promise };
    return promise;
  }
}
