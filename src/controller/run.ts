// `vfleet controller`'s loop: one controller (controller.ts) ticking on its own every tick (a
// quarter of the lease ttl, at most 1 s) until stopped, and a stop that is bounded even when
// Redis does not answer.
import type { FleetSession } from '../app/session.js';
import { type ControllerOptions, createController, type SpecSource } from './controller.js';

export interface RunningController {
  readonly id: string;
  /** How often it ticks (ms). */
  readonly tickMs: number;
  /** Epoch ms when the last tick ended (null: none yet): `/readyz` says whether it still ticks. */
  lastTickAt(): number | null;
  /** The session on the current spec (it changes with the spec). */
  session(): FleetSession;
  /** Stops ticking, waits for a reconcile in flight, gives up the leader lease, closes. */
  stop(): Promise<void>;
  /** Ticks as soon as the tick in hand (if any) ends, not at the next tick time. */
  nudge(): void;
  /** Resolves when the controller has stopped (after stop(), or a fatal error). */
  readonly done: Promise<void>;
}

/** A controller ticking on its own until stopped: what `vfleet controller` runs. */
export async function startController(
  source: SpecSource,
  options: ControllerOptions,
): Promise<RunningController> {
  const clock = options.clock ?? (() => Date.now());
  const tickMs = options.tickMs ?? Math.max(50, Math.min(1000, options.policy.ttlMs / 4));
  let wake: (() => void) | null = null;
  // A tick as soon as the one in hand ends: a fetch asked for has ended (reconcile what it
  // found), or a push webhook this process received asked for one.
  let nudged = false;
  const nudge = () => {
    nudged = true;
    wake?.();
  };
  const controller = await createController(source, { ...options, nudge });
  let stopped = false;
  let lastTickAt: number | null = null;
  const done = (async () => {
    while (!stopped) {
      const started = clock();
      await controller.tick();
      lastTickAt = clock();
      if (stopped) break;
      const wait = nudged ? 0 : Math.max(0, tickMs - (clock() - started));
      nudged = false;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, wait);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = null;
    }
    await controller.close();
  })();
  return {
    id: controller.id,
    nudge,
    tickMs,
    lastTickAt: () => lastTickAt,
    session: () => controller.session(),
    async stop() {
      stopped = true;
      (wake as (() => void) | null)?.();
      // A tick waiting on a Redis that does not answer would hold the stop for ever: past the
      // grace, every client is dropped (the lease, if held, expires on its own within a ttl).
      let timer: NodeJS.Timeout | undefined;
      const late = await Promise.race([
        done.then(() => false),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(true), STOP_GRACE_MS);
        }),
      ]);
      clearTimeout(timer);
      if (late) {
        // Commands queued on a dropped client may never settle: the loop gets a moment to end,
        // then the stop returns whatever it is still waiting for.
        controller.abandon();
        await Promise.race([done, new Promise((resolve) => setTimeout(resolve, 2_000))]);
      }
    },
    done,
  };
}

/** How long a stop waits for the tick in hand and a clean release before dropping Redis. */
const STOP_GRACE_MS = 10_000;
