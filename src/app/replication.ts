// Disk replication as the operations see it (docs/replication.md): what a sync job needs from a
// session (the controller's and `vfleet worker`'s replication workers run them), and whether a
// spec replicates anything at all.
import type { ReplicationJobDeps } from '../queue/replication-job.js';
import { ReplicationState } from '../state/replication-state.js';
import type { FleetSession } from './session.js';

export function replicationDeps(session: FleetSession, clock: () => number): ReplicationJobDeps {
  return {
    fleet: session.fleet,
    engine: (host) => session.engines.engine(host),
    instance: (name) => session.state.instance(name),
    replication: new ReplicationState(session.connection.redis, session.fleet.name),
    appendEvent: (event) => session.state.appendEvent(event),
    clock,
  };
}

/** Whether the spec asks for any replication at all. */
export function replicates(session: FleetSession): boolean {
  return session.fleet.groups.some((g) => g.replication !== undefined);
}
