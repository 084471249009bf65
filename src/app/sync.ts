// The controller's sync, from the outside (docs/reconcile.md): suspend and resume it (Flux's
// `suspend`), ask for a reconcile now (`argocd app sync`'s poke, Flux's `reconcile`), and read
// what the leader published.
import type { PublishedSync } from '../state/control-state.js';
import type { FleetSession } from './session.js';

export async function suspendSync(
  session: FleetSession,
  by: string,
  reason: string,
  nowMs: number,
): Promise<void> {
  await session.control.suspend(by, reason, nowMs);
}

/** True when the fleet was suspended. */
export function resumeSync(session: FleetSession): Promise<boolean> {
  return session.control.resume();
}

/** Every running controller reconciles at its next tick (a git source fetches first). */
export function requestReconcile(session: FleetSession): Promise<number> {
  return session.control.requestReconcile();
}

export interface SyncView {
  readonly published?: PublishedSync;
  readonly suspended?: { readonly by: string; readonly reason: string; readonly at: number };
}

export async function readSync(session: FleetSession): Promise<SyncView> {
  const [published, suspended] = await Promise.all([
    session.control.publishedSync(),
    session.control.suspended(),
  ]);
  return { ...(published ? { published } : {}), ...(suspended ? { suspended } : {}) };
}
