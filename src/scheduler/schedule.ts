// schedule(fleet, observed) → Placement: every instance on a host, exactly (no sampling) and
// deterministically (ties go to the host seen first; nothing random, no clock). explain() does
// the same and returns every host's verdict for one instance at its turn.
//
// It runs the stages of the stack in the order stack.ts gives, for the reasons it gives there.
import type { Fleet } from '../model/fleet.js';
import {
  type Explanation,
  NOTHING_OBSERVED,
  type ObservedPlacement,
  type Placement,
} from '../model/placement.js';
import { keepObserved } from './keep.js';
import { type Explaining, placeAll } from './place.js';
import { PlacementState } from './placement-state.js';
import { report } from './report.js';

export interface ScheduleResult {
  readonly placement: Placement;
  readonly explanation: Explanation | undefined;
}

export function schedule(fleet: Fleet, observed: ObservedPlacement = NOTHING_OBSERVED): Placement {
  return run(fleet, observed, undefined).placement;
}

/** Schedules and explains one instance: every host's verdict and score at its turn. */
export function explain(
  fleet: Fleet,
  instance: string,
  observed: ObservedPlacement = NOTHING_OBSERVED,
): ScheduleResult {
  return run(fleet, observed, instance);
}

function run(
  fleet: Fleet,
  observed: ObservedPlacement,
  instance: string | undefined,
): ScheduleResult {
  const explaining: Explaining = { instance, explanation: undefined };
  const state = new PlacementState(fleet); // 1. classes
  // Nothing asks the classes' FitIndexes anything while keeping: they learn the keys after.
  state.deferClassKeys();
  keepObserved(state, observed, explaining); // 2. keep
  state.flushClassKeys();
  const unplaceable = placeAll(state, explaining); // 3. place
  return { placement: report(state, unplaceable), explanation: explaining.explanation }; // 4. report
}
