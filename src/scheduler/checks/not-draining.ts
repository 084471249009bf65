// A host being drained takes nothing: what it runs moves off, nothing new lands
// (docs/reconcile.md, retiring a host).
import { no, OK, type StaticCheck } from './check.js';

const DRAINING = no('host-draining');

export const notDraining: StaticCheck = {
  name: 'not-draining',
  check: (host) => (host.drain ? DRAINING : OK),
};
