// The controller's sync, from the outside (docs/gitops.md): suspend and resume it (Flux's
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

/** A forge's push to the followed ref, as the webhook (http/git-webhook.ts) accepted it. */
export interface PushNotice {
  readonly forge: string;
  readonly ref: string;
  readonly commit?: string;
  readonly delivery?: string;
}

/**
 * A push webhook: recorded in the fleet's events (`push-received`: the forge, the ref, the
 * pushed commit — nothing of the request else), then the same request as `vfleet reconcile
 * --now`, so the leader fetches at its next tick wherever it runs. Returns the event.
 */
export async function requestFetch(
  session: FleetSession,
  push: PushNotice,
  nowMs: number,
): Promise<Record<string, unknown>> {
  const event = {
    at: nowMs,
    type: 'push-received',
    forge: push.forge,
    ref: push.ref,
    ...(push.commit ? { commit: push.commit } : {}),
    ...(push.delivery ? { delivery: push.delivery } : {}),
    cause: `a ${push.forge} push webhook for ${push.ref}${push.commit ? ` (${push.commit.slice(0, 7)})` : ''} asked for a fetch`,
  };
  await session.state.appendEvent({ ...event, by: 'webhook' });
  await session.control.requestReconcile();
  return event;
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
