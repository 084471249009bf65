// The controller's side of the vfleet agents on real hosts (engines/real/host-agent.ts;
// docs/controller.md, "The agent on real hosts"). Every controller, leader or standby, renews
// every real host it can reach, each tick, so a leader's death does not starve the hosts'
// watchdogs. Per host, one cycle at a time, never waited for by the tick (a host that hangs holds
// only its own cycle, bounded by a timeout of half a ttl):
//
//   1. the host's lease in Redis is renewed when the agent's heartbeat has moved since the last
//      renewal (a hung agent, a stopped host: no renewal, and the leader judges it lost) — and
//      only after a returning host's stale copies are gone;
//   2. then, and only if that Redis write succeeded, the host is renewed (its watchdog fed):
//      nothing feeds a host's watchdog without writing its Redis lease first, so a controller cut
//      off from Redis cannot keep a host alive that the leader counts as lost;
//   3. the answer: the watchdog's kills become a `self-fenced` event; a host that was unreachable,
//      fenced itself, had its agent restarted or is seen for the first time gets its stale copies
//      destroyed (instances the state now records on another host or at a newer generation)
//      before its lease is renewed again.
//
// A clean stop disarms the agents of the hosts no other controller renews (host-agent.ts).

import type { FleetSession } from '../app/session.js';
import { type AgentReport, feederId } from '../engines/real/host-agent.js';
import { isVfleetError } from '../model/errors.js';

interface HostState {
  cycle: Promise<void> | null;
  /** The agent's heartbeat in its last answer, and the one the Redis lease was renewed for. */
  beat?: string;
  renewedBeat?: string;
  /** The host must be checked for stale copies before its lease is renewed again. */
  rejoin: boolean;
  /** The watchdog's report this controller has acted on (sent back as the renewal's ack). */
  fencedSum: string;
  /** The restart of the agent's loops this controller has acted on (the leader acknowledges it). */
  startedSum?: string;
  /** Answered at least once since this controller started. */
  contacted: boolean;
  turn: number;
  lastError: string;
}

export interface HostAgentsOptions {
  readonly ttlMs: number;
  readonly controllerId: string;
  readonly emit: (type: string, fields: Record<string, unknown>) => Promise<void>;
  /** Whether this controller leads: only the leader says that a host's agent stopped answering. */
  readonly leading: () => boolean;
}

export class HostAgents {
  private readonly hosts = new Map<string, HostState>();
  private readonly feeder: string;

  constructor(
    private readonly session: () => FleetSession,
    private readonly options: HostAgentsOptions,
  ) {
    this.feeder = feederId(options.controllerId);
  }

  /** Starts a cycle for every real host that has none running; never waits for one. */
  tick(now: number): void {
    const agents = this.session().engines.hostAgents();
    for (const host of [...this.hosts.keys()]) if (!agents.has(host)) this.hosts.delete(host);
    for (const host of agents.keys()) {
      let st = this.hosts.get(host);
      if (!st) {
        st = {
          cycle: null,
          rejoin: true,
          contacted: false,
          turn: 0,
          lastError: '',
          fencedSum: '',
        };
        this.hosts.set(host, st);
      }
      if (st.cycle) continue;
      const state = st;
      state.cycle = this.cycle(host, state, now)
        .catch((e) => this.failed(host, state, e))
        .finally(() => {
          state.cycle = null;
        });
    }
  }

  /**
   * Disarms the hosts nobody else renews, each right after its own cycle in flight (bounded by
   * half a ttl, as a cycle is): a renewal landing after the disarm would restart the loops, and a
   * host's disarm must not wait on another's slow cycle while its own watchdog runs down.
   */
  async close(): Promise<void> {
    const bound = (p: Promise<unknown>, ms: number) =>
      Promise.race([p.catch(() => undefined), new Promise((r) => setTimeout(r, ms).unref())]);
    const agents = this.session().engines.hostAgents();
    const disarmed: string[] = [];
    const armed: string[] = [];
    await bound(
      Promise.all(
        [...agents].map(async ([host, agent]) => {
          const cycle = this.hosts.get(host)?.cycle;
          if (cycle) await bound(cycle, Math.max(1_000, this.options.ttlMs / 2));
          const done = await agent
            .disarm(this.options.ttlMs, this.feeder, 5_000)
            .catch(() => undefined);
          if (done === true) disarmed.push(host);
          else if (done === false) armed.push(host);
        }),
      ),
      6_000 + Math.max(1_000, this.options.ttlMs / 2),
    );
    if (disarmed.length > 0)
      await this.options.emit('agents-disarmed', {
        hosts: disarmed.sort(),
        cause: 'the controller stopped and no other controller renews these hosts',
      });
    if (armed.length > 0)
      await this.options.emit('agents-left-armed', {
        hosts: armed.sort(),
        cause: 'another controller renews these hosts',
      });
  }

  private async cycle(host: string, st: HostState, now: number): Promise<void> {
    const session = this.session();
    if (!st.rejoin && st.beat !== undefined && st.beat !== st.renewedBeat) {
      await session.control.renewLease(host, now, 'agent');
      st.renewedBeat = st.beat;
    } else {
      // Nothing to renew: Redis must still answer before this controller may feed a watchdog.
      await session.control.leases();
    }
    const agent = session.engines.hostAgents().get(host);
    if (!agent) return;
    let report: AgentReport;
    try {
      report = await agent.renew(
        this.options.ttlMs,
        `${this.feeder}.${++st.turn}`,
        this.feeder,
        Math.max(500, Math.round(this.options.ttlMs / 2)),
        st.fencedSum,
        // Only the leader acknowledges a restart of the loops: it is the one that reports it.
        this.options.leading() ? (st.startedSum ?? '') : '',
      );
    } catch (e) {
      st.rejoin = true;
      throw e;
    }
    const fencedNow = report.fencedSum !== undefined && report.fencedSum !== st.fencedSum;
    if (fencedNow) st.rejoin = true;
    if (fencedNow && report.fenced.length > 0) {
      await this.options.emit('self-fenced', {
        host,
        instances: report.fenced,
        cause: `no renewal reached its agent for ${this.options.ttlMs} ms (or the agent hung): its watchdog killed these instances`,
      });
    }
    // Reported until the leader acknowledges it, so a lost answer still makes the event.
    const startedNow = report.started.length > 0 && report.startedSum !== st.startedSum;
    if (startedNow) {
      st.rejoin = true;
      if (st.contacted && this.options.leading())
        await this.options.emit('agent-restarted', {
          host,
          loops: report.started,
          cause: 'the agent was not running on the host (it died, or the host restarted)',
        });
    }
    st.contacted = true;
    if (st.rejoin) {
      const destroyed = await this.destroyStaleCopies(host);
      st.rejoin = false;
      if (destroyed.length > 0)
        await this.options.emit('stale-copies-destroyed', {
          host,
          instances: destroyed,
          cause: 'the host returned; these instances run elsewhere now or at a newer generation',
        });
    }
    // Acted on (reported, stale copies gone): the next renewal lets the host forget it.
    if (report.fencedSum !== undefined) st.fencedSum = report.fencedSum;
    st.startedSum = report.startedSum;
    st.beat = report.beat;
    if (st.lastError !== '') {
      st.lastError = '';
      if (this.options.leading()) await this.options.emit('agent-answers', { host });
    }
  }

  /** Destroys what the host holds that the state records elsewhere or newer; returns the names. */
  private async destroyStaleCopies(host: string): Promise<string[]> {
    const session = this.session();
    const engine = session.engines.engine(host);
    const held = await engine.list();
    const recorded = await session.state.placements(held.map((x) => x.instance));
    const destroyed: string[] = [];
    for (const x of held) {
      const r = recorded.get(x.instance);
      // Elsewhere at the same generation or newer, or here at a newer one; a copy newer than its
      // record (a job that has not written it yet) is left alone.
      const stale =
        r && (r.host === host ? r.generation > x.generation : r.generation >= x.generation);
      if (!stale) continue;
      // At the record's generation: the host's fence rises with it, so no late job of the old
      // placement can bring this copy back.
      await engine.destroy(x.instance, r.generation);
      destroyed.push(x.instance);
    }
    return destroyed;
  }

  private async failed(host: string, st: HostState, e: unknown): Promise<void> {
    const cause = isVfleetError(e) ? `${e.code}: ${e.message}` : String(e);
    const first = st.lastError === '';
    st.lastError = cause;
    // A host that does not answer is the liveness judge's to report (host-suspect, host-lost);
    // this says why, once per outage (its causes alternate: a timeout, then a refused handshake).
    if (first && this.options.leading())
      await this.options.emit('agent-unanswered', { host, cause }).catch(() => undefined);
  }
}
