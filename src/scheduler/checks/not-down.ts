// A host that is down — lost past the point where its instances may run elsewhere, or fenced by
// an operator (model/host-health.ts) — takes nothing and is no failover target: its instances
// restart elsewhere (keep.ts tries their failover hosts first), and the reserve is recomputed
// for the degraded fleet.
import { no, OK, type StaticCheck } from './check.js';

const DOWN = no('host-down');

export const notDown: StaticCheck = {
  name: 'not-down',
  check: (host) => (host.down ? DOWN : OK),
};
