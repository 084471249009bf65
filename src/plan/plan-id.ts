// A plan's identity and when a saved one is stale. Pure: the caller supplies the hashes.
import { createHash } from 'node:crypto';
import type { Plan } from '../model/plan.js';

/**
 * A plan's id: the inputs and the state it was made from, so the same inputs give the same jobs.
 * A destroy plan of the same spec and state is another plan, with other jobs: its id differs.
 */
export function planIdOf(specHash: string, stateVersion: number, destroy = false): string {
  const input = `${destroy ? 'destroy:' : ''}${specHash}:${stateVersion}`;
  return createHash('sha256').update(input).digest('hex').slice(0, 16);
}

/** Why a saved plan may no longer be applied. */
export type Staleness =
  | { readonly reason: 'inputs-changed'; readonly message: string }
  | {
      readonly reason: 'state-moved';
      readonly from: number;
      readonly to: number;
      readonly message: string;
    };

/**
 * A saved plan is stale once the spec (or a file it names that vfleet read) changed, or the
 * fleet's state moved: it was made against inputs that are no longer there. Undefined: current.
 */
export function stalenessOf(
  saved: Pick<Plan, 'specHash' | 'stateVersion'>,
  now: { readonly file: string; readonly specHash: string; readonly stateVersion: number },
): Staleness | undefined {
  if (saved.specHash !== now.specHash) {
    return {
      reason: 'inputs-changed',
      message: `the saved plan is stale: ${now.file} (or a file it names, such as a packagesFrom inventory) changed since it was made. Run vfleet plan again.`,
    };
  }
  if (saved.stateVersion !== now.stateVersion) {
    return {
      reason: 'state-moved',
      from: saved.stateVersion,
      to: now.stateVersion,
      message: `the saved plan is stale: the fleet's state moved from version ${saved.stateVersion} to ${now.stateVersion} since it was made. Run vfleet plan again.`,
    };
  }
  return undefined;
}
