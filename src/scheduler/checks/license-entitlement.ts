// Placing the instance keeps every license pool it draws on within its entitlement (the units
// it adds on this host, src/licensing/license-ledger.ts).
import type { LicensePool } from '../../model/fleet.js';
import { type DynamicCheck, no, OK } from './check.js';

export const licenseEntitlement: DynamicCheck = {
  name: 'license',
  check: (s, p, h) => {
    for (const pool of p.pools) {
      if (!s.ledger.affordable(pool, s.ledger.primaryDelta(pool, h, p.group.resources))) {
        return licenseExhausted(s.fleet.licenses[pool] as LicensePool);
      }
    }
    return OK;
  },
};

export function licenseExhausted(pool: LicensePool) {
  return no(`license-exhausted:${pool.name}` as const);
}
