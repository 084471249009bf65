// What only a controller knows, as metrics: each reconcile's duration and the sync status it
// left, the failovers it ran and how long each took, whether it leads. Fed by the controller's
// own events and reconcile reports (controller.ts: onEvent, onReconcile), so nothing here reads
// Redis.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { ControllerEvent, ReconcileReport } from '../controller/controller.js';

/** Reconciles take from milliseconds (nothing to do) to minutes (a roll-out of a large fleet). */
const RECONCILE_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
/**
 * A failover takes at least three lease ttls (30 s at the defaults: docs/controller.md) from the
 * host's last renewal to a restart, less when an operator fences the host.
 */
const FAILOVER_BUCKETS = [5, 10, 15, 20, 30, 40, 50, 60, 90, 120, 180, 300, 600];

export class ControllerMetrics {
  private readonly reconcileDuration: Histogram<'sync_status'>;
  private readonly failovers: Counter<'result'>;
  private readonly failoverDuration: Histogram;
  private readonly leader: Gauge;
  /** host → epoch ms of its last lease renewal the leader saw, while it is not ok. */
  private readonly outages = new Map<string, number>();
  private leading = false;

  constructor(registry: Registry) {
    this.reconcileDuration = new Histogram({
      name: 'vfleet_reconcile_duration_seconds',
      help: 'How long each reconcile (plan, and the restarts or changes it applied) took, by the sync status it left',
      labelNames: ['sync_status'],
      buckets: RECONCILE_BUCKETS,
      registers: [registry],
    });
    this.failovers = new Counter({
      name: 'vfleet_failovers_total',
      help: 'Instances of a down host restarted elsewhere (result=restarted), or whose restart failed (result=failed)',
      labelNames: ['result'],
      registers: [registry],
    });
    this.failoverDuration = new Histogram({
      name: 'vfleet_failover_duration_seconds',
      help: "From the down host's last lease renewal the leader saw to the instance restarted elsewhere",
      buckets: FAILOVER_BUCKETS,
      registers: [registry],
    });
    this.leader = new Gauge({
      name: 'vfleet_controller_leader',
      help: 'Whether this controller holds the leader lease (1) or stands by (0)',
      registers: [registry],
      collect: () => this.leader.set(this.leading ? 1 : 0),
    });
    // Both results exist from the start: a rate over a counter that appears later misses its first increase.
    this.failovers.inc({ result: 'restarted' }, 0);
    this.failovers.inc({ result: 'failed' }, 0);
  }

  onReconcile(report: ReconcileReport): void {
    this.reconcileDuration.observe({ sync_status: report.status }, report.durationMs / 1000);
  }

  onEvent(event: ControllerEvent): void {
    const host = typeof event.host === 'string' ? event.host : undefined;
    switch (event.type) {
      case 'leader':
        this.leading = true;
        break;
      case 'leader-lost':
      case 'leader-released':
        this.leading = false;
        this.outages.clear();
        break;
      case 'host-suspect':
      case 'host-lost':
      case 'host-fenced':
        if (host !== undefined && !this.outages.has(host)) {
          const age = typeof event.leaseAgeMs === 'number' ? event.leaseAgeMs : 0;
          this.outages.set(host, event.at - age);
        }
        break;
      case 'host-ok':
      case 'host-draining':
        if (host !== undefined) this.outages.delete(host);
        break;
      case 'restarted': {
        this.failovers.inc({ result: 'restarted' });
        const since = typeof event.from === 'string' ? this.outages.get(event.from) : undefined;
        if (since !== undefined)
          this.failoverDuration.observe(Math.max(0, event.at - since) / 1000);
        break;
      }
      case 'restart-failed':
        this.failovers.inc({ result: 'failed' });
        break;
    }
  }
}
