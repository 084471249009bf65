// `/metrics`: the fleet in the Prometheus text format (prom-client), docs/metrics.md. On each
// scrape: the hosts' health and lease age as the leader published them (a few Redis reads), the
// instances by status and the audits' license and patch figures from the cached observation
// (observation-cache.ts: a refresh of every host at most every few seconds, not per scrape), the
// fleet's sync status as the leader published it (MetricsSource), and BullMQ's own export of every host
// queue. The controller's histograms and counters (controller-metrics.ts) live in the same
// registry. Scrapes that arrive together share one rendering.
import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import { OBSERVED_STATUSES } from '../app/fleet-observation.js';
import { judgeHosts } from '../app/host-health.js';
import type { FleetSession } from '../app/session.js';
import { HOST_HEALTHS } from '../model/host-health.js';
import { exportQueueMetrics, type HostQueues } from './host-queues.js';
import { HttpError } from './http-error.js';
import type { ObservationCache } from './observation-cache.js';

/**
 * The fleet's sync status and health, as a GitOps controller reports them (Argo CD's
 * `argocd_app_info{sync_status, health_status}`), and the revision it is synced to.
 */
export interface FleetSync {
  /** `Synced`, `OutOfSync`, `Unknown` (model/source.ts). */
  readonly syncStatus: string;
  /** `Healthy`, `Progressing`, `Degraded`, `Missing`, `Unknown`, `Suspended`. */
  readonly health: string;
  /** The commit the fleet was last synced to (a spec file outside git: its sha256). */
  readonly revision: string;
}

/** What a process serving metrics gives the server. */
export interface MetricsSource {
  /** The session the fleet is read through (a controller's follows the spec); undefined: starting. */
  session(): FleetSession | undefined;
  /**
   * The fleet's sync: what the leader controller published (cli/http-options.ts reads it, for the
   * controller and the worker alike); undefined when none did: no `vfleet_fleet_info` sample.
   */
  sync(session: FleetSession): Promise<FleetSync | undefined>;
}

export class FleetMetrics {
  readonly registry = new Registry();
  private rendering: Promise<string> | undefined;
  private readonly g: ReturnType<typeof gauges>;
  private readonly observationFailures: Counter;
  private failuresCounted = 0;

  constructor(
    private readonly source: MetricsSource,
    private readonly observations: ObservationCache,
    private readonly queues: HostQueues,
  ) {
    // The process's own (CPU, memory, event loop lag, handles): what an operator asks first.
    collectDefaultMetrics({ register: this.registry });
    this.g = gauges(this.registry);
    this.observationFailures = new Counter({
      name: 'vfleet_observation_failures_total',
      help: 'Observations that failed (the last good one is served meanwhile)',
      registers: [this.registry],
    });
  }

  /** The exposition; scrapes that come while one is rendered get that one. */
  render(): Promise<string> {
    this.rendering ??= this.renderNow().finally(() => {
      this.rendering = undefined;
      // Once the answer is written (an immediate runs after this turn's microtasks and I/O):
      // a stale observation is renewed between scrapes, not during one.
      const session = this.source.session();
      if (session) setImmediate(() => this.observations.refreshIfStale(session));
    });
    return this.rendering;
  }

  private async renderNow(): Promise<string> {
    const session = this.source.session();
    if (!session) throw new HttpError(503, 'starting: the fleet is not open yet');
    const now = Date.now();
    // BullMQ's thousands of small commands go first: Redis answers them on its own core while
    // this process reads the health and renders its own families.
    const queueText = exportQueueMetrics(this.queues.of(session));
    queueText.catch(() => undefined); // awaited below; a failure of the rest must not orphan it
    const [health, observation, sync] = await Promise.all([
      judgeHosts(session, now),
      this.observations.latest(session),
      this.source.sync(session),
    ]);
    const g = this.g;
    for (const gauge of Object.values(g)) gauge.reset();

    if (sync)
      g.fleetInfo.set(
        {
          fleet: session.fleet.name,
          sync_status: sync.syncStatus,
          health_status: sync.health,
          revision: sync.revision,
        },
        1,
      );

    const byHealth = new Map<string, number>(HOST_HEALTHS.map((h) => [h, 0]));
    for (const host of session.fleet.hosts) {
      const judged = health.get(host.name);
      if (!judged) continue;
      byHealth.set(judged.health, (byHealth.get(judged.health) ?? 0) + 1);
      for (const h of HOST_HEALTHS)
        g.hostHealth.set({ host: host.name, health: h }, h === judged.health ? 1 : 0);
      if (judged.leaseAgeMs !== null) g.leaseAge.set({ host: host.name }, judged.leaseAgeMs / 1000);
    }
    for (const [h, n] of byHealth) g.hosts.set({ health: h }, n);

    for (const s of OBSERVED_STATUSES)
      g.instances.set({ status: s }, observation.instancesByStatus[s]);
    for (const p of observation.pools) {
      g.licenseUsed.set({ pool: p.pool }, p.used);
      g.licenseNeeded.set({ pool: p.pool }, p.needed);
      g.licenseEntitlement.set({ pool: p.pool }, p.entitlement);
      g.licenseShortfall.set({ pool: p.pool }, p.shortfall);
    }
    for (const b of observation.baselines) {
      g.patchSubjects.set({ baseline: b.baseline, compliance: 'compliant' }, b.compliant);
      g.patchSubjects.set({ baseline: b.baseline, compliance: 'non-compliant' }, b.nonCompliant);
      g.patchSubjects.set({ baseline: b.baseline, compliance: 'pending-reboot' }, b.pendingReboot);
      g.patchSubjects.set({ baseline: b.baseline, compliance: 'failed' }, b.failed);
      g.patchSubjects.set({ baseline: b.baseline, compliance: 'not-applicable' }, b.notApplicable);
    }
    const failover = observation.summary.failover;
    if (failover) {
      g.failoverProtected.set(failover.protected);
      g.failoverCovered.set(failover.covered);
      g.failoverScenariosNotCovered.set(failover.scenariosNotCovered);
    }
    g.observedAt.set(observation.at / 1000);
    g.observationDuration.set(this.observations.lastDurationMs / 1000);
    this.observationFailures.inc(this.observations.failures - this.failuresCounted);
    this.failuresCounted = this.observations.failures;
    const own = await this.registry.metrics();
    return `${own}${await queueText}`;
  }
}

function gauges(registry: Registry) {
  const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[] = []) =>
    new Gauge<L>({ name, help, labelNames, registers: [registry] });
  return {
    fleetInfo: gauge(
      'vfleet_fleet_info',
      "The fleet's sync status, health and the revision it is synced to (always 1)",
      ['fleet', 'sync_status', 'health_status', 'revision'],
    ),
    hosts: gauge('vfleet_hosts', 'Hosts of the spec by health', ['health']),
    hostHealth: gauge(
      'vfleet_host_health',
      "1 for the host's current health (the leader controller's judgement), 0 for the others",
      ['host', 'health'],
    ),
    leaseAge: gauge(
      'vfleet_host_lease_age_seconds',
      "Seconds since the host's lease last changed, as the leader saw it",
      ['host'],
    ),
    instances: gauge('vfleet_instances', 'Instances by status, as vfleet status shows them', [
      'status',
    ]),
    licenseUsed: gauge('vfleet_license_used', 'License units the running instances use', ['pool']),
    licenseNeeded: gauge(
      'vfleet_license_needed',
      'License units needed, failover targets counted where the pool covers failover',
      ['pool'],
    ),
    licenseEntitlement: gauge('vfleet_license_entitlement', 'License units owned', ['pool']),
    licenseShortfall: gauge(
      'vfleet_license_shortfall',
      'License units needed beyond the entitlement (0: compliant)',
      ['pool'],
    ),
    patchSubjects: gauge(
      'vfleet_patch_subjects',
      'Instances and hosts per patch baseline, by compliance',
      ['baseline', 'compliance'],
    ),
    failoverProtected: gauge(
      'vfleet_failover_protected_instances',
      'Instances with failover: true',
    ),
    failoverCovered: gauge(
      'vfleet_failover_covered_instances',
      'Protected instances whose failover host would take them in every failure scenario',
    ),
    failoverScenariosNotCovered: gauge(
      'vfleet_failover_scenarios_not_covered',
      'Failure scenarios (a failure domain down) in which some protected instance has nowhere to go',
    ),
    observedAt: gauge(
      'vfleet_observation_timestamp_seconds',
      'When the instances and audit figures were observed (they are cached a few seconds)',
    ),
    observationDuration: gauge(
      'vfleet_observation_duration_seconds',
      'How long the last observation (refresh of every host and the audits) took',
    ),
  };
}
