// The fleet's observation (app/fleet-observation.ts: a refresh of every host and the three
// audits) kept for a few seconds, so that a scrape of a big fleet costs a few Redis reads and not
// a refresh: a scrape gets the last one and, when it is older than `maxAgeMs`, starts the next
// in the background (stale-while-revalidate); only the first scrape waits. A report page asks for
// one at most a moment old and waits for it. One observation is made at a time, whoever asks.
import type { FleetObservation } from '../app/fleet-observation.js';
import type { FleetSession } from '../app/session.js';

export interface ObservationCacheOptions {
  readonly observe: (session: FleetSession) => Promise<FleetObservation>;
  /** Older than this, a scrape starts the next observation. */
  readonly maxAgeMs: number;
  readonly clock?: () => number;
}

export class ObservationCache {
  private last: { session: FleetSession; observation: FleetObservation } | undefined;
  private inFlight: { session: FleetSession; promise: Promise<FleetObservation> } | undefined;
  /** Observations that failed since the process started (a gauge says so). */
  failures = 0;
  /** How long the last observation took (ms). */
  lastDurationMs = 0;
  private readonly clock: () => number;

  constructor(private readonly options: ObservationCacheOptions) {
    this.clock = options.clock ?? Date.now;
  }

  /** For a scrape: the last observation of this session, refreshed behind it when stale. */
  async latest(session: FleetSession): Promise<FleetObservation> {
    const last = this.last?.session === session ? this.last.observation : undefined;
    if (last === undefined) return this.observe(session);
    if (this.clock() - last.at > this.options.maxAgeMs) {
      // A failure is counted by observe(); the scrape keeps the last one.
      this.observe(session).catch(() => undefined);
    }
    return last;
  }

  /** For a report page: an observation made at most `maxAgeMs` ago. */
  async fresh(session: FleetSession, maxAgeMs: number): Promise<FleetObservation> {
    const last = this.last?.session === session ? this.last.observation : undefined;
    if (last !== undefined && this.clock() - last.at <= maxAgeMs) return last;
    return this.observe(session);
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
        this.last = { session, observation };
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
