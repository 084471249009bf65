// What a worker does with one job: read the host's real state first and skip what is already
// done (idempotence), act with the action's generation (the host fences older ones), record the
// outcome in the state store and the event history. A non-retryable error becomes BullMQ's
// UnrecoverableError at this boundary (habit 8, docs/architecture.md); anything else is retried with backoff.
import { UnrecoverableError } from 'bullmq';
import type { EngineInstance, HostEngine, InstanceRequest } from '../engines/host-engine.js';
import { isVfleetError, VfleetError } from '../model/errors.js';
import {
  type PatchStatus,
  patchStatusOf,
  type RecordedInstance,
  recordedAfterAction,
} from '../model/instances.js';
import { compareDebianVersions } from '../patching/debian-version.js';
import type { ActionJobData } from './plan-jobs.js';

/** Where outcomes go: the state store (src/state) implements it. */
export interface StateSink {
  putInstance(record: RecordedInstance): Promise<unknown>;
  /**
   * `putInstance` only while `planId` is the plan being applied (one step on the server); false
   * when refused. A sink without it writes unconditionally.
   */
  putInstanceOfPlan?(record: RecordedInstance, planId: string): Promise<boolean>;
  deleteInstance(name: string): Promise<unknown>;
  appendEvent(event: Record<string, string | number | null>): Promise<unknown>;
  /**
   * Whether the job's plan is the one being applied. A job left in a queue by an apply that died
   * belongs to a superseded plan and must not act: the new plan may have put the same instance
   * on another host at the same generation, where the hosts' own fencing cannot tell them apart.
   */
  isCurrentPlan(planId: string): Promise<boolean>;
  /** Whether `token` is the current leader controller's fencing token. */
  isLeaderToken(token: number): Promise<boolean>;
  /**
   * Records an instance's last patch as its host reported it, for the patch audit (null:
   * forgets it: the instance is a new one). Optional: a sink without it keeps none.
   */
  putPatchStatus?(name: string, status: PatchStatus | null): Promise<unknown>;
}

export interface EngineLookup {
  engine(host: string): HostEngine;
}

export type JobOutcome = 'done' | 'already-done';

export function actionHandler(engines: EngineLookup, state: StateSink, clock: () => number) {
  return async (job: { name: string; data: ActionJobData }): Promise<JobOutcome> => {
    const { data } = job;
    if (!(await state.isCurrentPlan(data.planId))) {
      throw new UnrecoverableError(
        `superseded: plan ${data.planId} is no longer the one being applied`,
      );
    }
    if (data.leaderToken !== undefined && !(await state.isLeaderToken(data.leaderToken))) {
      throw new UnrecoverableError(
        `deposed: the controller that enqueued this job (token ${data.leaderToken}) is no longer the leader`,
      );
    }
    try {
      const outcome = await perform(engines, state, data, clock);
      await state.appendEvent(event(data, clock(), outcome, null));
      return outcome;
    } catch (e) {
      await state
        .appendEvent(event(data, clock(), 'failed', errorMessage(e)))
        .catch(() => undefined);
      if (isVfleetError(e) && !e.retryable) throw new UnrecoverableError(`${e.code}: ${e.message}`);
      throw e;
    }
  };
}

function errorMessage(e: unknown): string {
  return isVfleetError(e) ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(e);
}

function event(data: ActionJobData, at: number, outcome: string, error: string | null) {
  return {
    at,
    plan: data.planId,
    instance: data.action.instance,
    action: data.action.kind,
    step: data.step,
    host: data.host,
    generation: data.action.generation,
    outcome,
    error,
  };
}

function request(data: ActionJobData): InstanceRequest {
  if (!data.image)
    throw new VfleetError(
      'image-missing',
      `no image ${data.action.image} for ${data.action.instance}`,
    );
  return {
    name: data.action.instance,
    group: data.action.group,
    generation: data.action.generation,
    image: data.image,
    resources: data.action.resources,
    plan: data.planId,
  };
}

function current(engine: HostEngine, name: string): Promise<EngineInstance | undefined> {
  return engine.describe(name);
}

const sameResources = (i: EngineInstance, data: ActionJobData) =>
  i.resources.vcpus === data.action.resources.vcpus &&
  i.resources.memoryMiB === data.action.resources.memoryMiB &&
  i.resources.diskGiB === data.action.resources.diskGiB &&
  i.image === data.action.image;

/** Whether every wanted package is installed at (at least) the wanted version. */
function raised(
  installed: Readonly<Record<string, string>>,
  wanted: Readonly<Record<string, string>>,
) {
  return Object.entries(wanted).every(
    ([name, version]) =>
      installed[name] !== undefined && compareDebianVersions(installed[name], version) >= 0,
  );
}

async function record(
  state: StateSink,
  data: ActionJobData,
  instance: EngineInstance,
  host: string,
) {
  const record = recordedAfterAction(host, instance, data.action);
  if (!state.putInstanceOfPlan) {
    await state.putInstance(record);
    return;
  }
  // What the host did stands (its own fence keeps it from going back); the state takes the record
  // only from the plan being applied: a late job of a superseded plan leaves it to the next refresh.
  if (!(await state.putInstanceOfPlan(record, data.planId))) {
    throw new UnrecoverableError(
      `superseded: plan ${data.planId} was replaced while ${data.action.instance} was being acted on; its record is left to the next refresh`,
    );
  }
}

async function perform(
  engines: EngineLookup,
  state: StateSink,
  data: ActionJobData,
  clock: () => number,
): Promise<JobOutcome> {
  const a = data.action;
  const engine = engines.engine(data.host);
  const now = await current(engine, a.instance);
  const done = now !== undefined && now.generation >= a.generation;
  switch (data.step) {
    case 'create':
    case 'move-in': {
      if (done && now.status === 'running') {
        if (data.step === 'create' || a.stopFirst) await record(state, data, now, data.host);
        return 'already-done';
      }
      // A restart from the replica the failover host keeps (docs/replication.md): its disk is
      // made from the replica first, as a copied disk is before a move's create. Done again on a
      // retry, it finds the disk there already.
      if (data.step === 'create' && a.fromReplica && now === undefined) {
        await engine.restoreReplica(a.instance, a.generation);
      }
      const created = await engine.create(request(data));
      // A stop-first move has no move-out to record where it went: its move-in does.
      if (data.step === 'create' || a.stopFirst) await record(state, data, created, data.host);
      return 'done';
    }
    case 'start': {
      if (done && now.status === 'running') {
        await record(state, data, now, data.host);
        return 'already-done';
      }
      const started = await engine.start(a.instance, a.generation);
      await record(state, data, started, data.host);
      // Started again: a reboot a patch asked for may be done (the host's lastPatch says).
      if (started.lastPatch) await recordPatch(state, started, [], clock);
      return 'done';
    }
    case 'retarget': {
      // Only the failover host changed: record it; the host is not called, the instance runs on.
      if (!now) {
        throw new VfleetError('instance-missing', `${a.instance} is not on ${data.host}`);
      }
      await record(state, data, now, data.host);
      return 'done';
    }
    case 'replace': {
      // Resources or image changed: the instance is recreated in place (Terraform's -/+).
      if (done && now.status === 'running' && sameResources(now, data)) {
        await record(state, data, now, data.host);
        return 'already-done';
      }
      await engine.destroy(a.instance, a.generation);
      await record(state, data, await engine.create(request(data)), data.host);
      await state.putPatchStatus?.(a.instance, null); // a new instance, from its image
      return 'done';
    }
    case 'destroy': {
      if (now) await engine.destroy(a.instance, a.generation);
      await state.deleteInstance(a.instance);
      return now ? 'done' : 'already-done';
    }
    case 'remove-stray': {
      // A second copy on this host; the instance's record (on another host) is not touched.
      if (now) await engine.destroy(a.instance, a.generation);
      return now ? 'done' : 'already-done';
    }
    case 'copy-disk': {
      if (!now) return 'already-done'; // the source is gone already: an earlier run moved it
      await engine.copyDisk(a.instance, a.generation, engines.engine(a.host));
      return 'done';
    }
    case 'patch': {
      const wanted = a.packages ?? {};
      if (done && now && raised(now.packages, wanted)) {
        await record(state, data, now, data.host);
        return 'already-done';
      }
      if (!now) {
        throw new VfleetError('instance-missing', `${a.instance} is not on ${data.host}`, {
          retryable: true,
        });
      }
      return patch(engine, state, data, wanted, clock, now.status === 'running');
    }
    case 'vacate': {
      // A stop-first move's first half, on the source: stopped (a consistent disk), the disk
      // copied to the target, removed here so that what waits for the room can land. The
      // state says where it now is: on the target, stopped, until its move-in starts it.
      if (!now) return 'already-done';
      const target = engines.engine(a.host);
      await engine.stop(a.instance, a.generation);
      await engine.copyDisk(a.instance, a.generation, target);
      await engine.destroy(a.instance, a.generation);
      await record(state, data, { ...now, status: 'stopped' }, a.host);
      return 'done';
    }
    case 'migrate':
      return migrate(engines, state, data, now);
    case 'move-out': {
      const target = await current(engines.engine(a.host), a.instance);
      if (target?.status !== 'running') {
        throw new VfleetError(
          'move-incomplete',
          `${a.instance} is not running on ${a.host}; not removing it from ${data.host}`,
          {
            retryable: true,
          },
        );
      }
      if (now) {
        await engine.stop(a.instance, a.generation);
        await engine.destroy(a.instance, a.generation);
      }
      await record(state, data, target, a.host);
      return now ? 'done' : 'already-done';
    }
  }
}

/**
 * A patch (docs/patching.md). A real host says what it did (`lastPatch`): an event `patched`
 * names what changed and whether the instance asks for a reboot. When it fails, the instance is
 * recorded as its host now reports it (dpkg's inventory after the failure), so the audit and the
 * next plan see what is installed; the job fails with the host's one line (dpkg's own words).
 */
async function patch(
  engine: HostEngine,
  state: StateSink,
  data: ActionJobData,
  wanted: Readonly<Record<string, string>>,
  clock: () => number,
  wasRunning: boolean,
): Promise<JobOutcome> {
  const a = data.action;
  const asked = Object.keys(wanted);
  // The replica is out of service from here until it runs again (the end of this job): what
  // maxUnavailable counts, and what the event history shows (docs/patching.md).
  await state.appendEvent({
    at: clock(),
    type: 'patch-started',
    instance: a.instance,
    group: a.group,
    host: data.host,
    generation: a.generation,
    batch: a.batch ?? 1,
  });
  let patched: EngineInstance;
  try {
    patched = await engine.patch(a.instance, a.generation, wanted, {
      ...(a.reboot ? { reboot: a.reboot } : {}),
      ...(a.rollback ? { rollback: true } : {}),
    });
  } catch (e) {
    const after = await current(engine, a.instance).catch(() => undefined);
    if (after?.lastPatch?.generation === a.generation && after.lastPatch.outcome === 'failed') {
      await record(state, data, after, data.host);
      await recordPatch(state, after, asked, clock);
    }
    throw e;
  }
  // The next batch starts when this one is running again: a patch that left its instance not
  // running (it was running before) is retried until it is, or fails.
  if (wasRunning && patched.status !== 'running') {
    throw new VfleetError(
      'patch-incomplete',
      `${a.instance} is ${patched.status} on ${data.host} after its patch, not running`,
      { retryable: true },
    );
  }
  await record(state, data, patched, data.host);
  await recordPatch(state, patched, asked, clock);
  const last = patched.lastPatch;
  if (last?.generation === a.generation) {
    await state.appendEvent({
      at: clock(),
      type: 'patched',
      instance: a.instance,
      host: data.host,
      generation: a.generation,
      outcome: last.outcome,
      changed:
        last.changed
          .map((c) => `${c.package} ${c.from ?? 'none'} → ${c.to ?? 'none'}`)
          .join(', ') || 'nothing',
      rebootRequired: last.rebootRequired ? 1 : 0,
    });
  }
  return 'done';
}

/** The host's lastPatch into the state's patch statuses (the audit's pending-reboot, failed). */
async function recordPatch(
  state: StateSink,
  instance: EngineInstance,
  asked: readonly string[],
  clock: () => number,
): Promise<void> {
  if (!instance.lastPatch || !state.putPatchStatus) return;
  await state.putPatchStatus(
    instance.instance,
    patchStatusOf(instance.instance, instance.lastPatch, asked, clock()),
  );
}

/**
 * A live move (docs/replication.md): the running VM migrated to the target without a stop; when
 * the engines cannot (`migration-failed`: no convergence, an engine that cannot yet), stop, copy
 * the disk, start on the target, remove from the source — in this job, said in the events.
 */
async function migrate(
  engines: EngineLookup,
  state: StateSink,
  data: ActionJobData,
  now: EngineInstance | undefined,
): Promise<JobOutcome> {
  const a = data.action;
  const source = engines.engine(data.host);
  const target = engines.engine(a.host);
  const there = await current(target, a.instance);
  if (there && there.generation >= a.generation && there.status === 'running') {
    // Done already (a job run again): what is left on the source is a copy to remove.
    if (now) await source.destroy(a.instance, a.generation);
    await record(state, data, there, a.host);
    return 'already-done';
  }
  if (!now) {
    throw new VfleetError(
      'instance-missing',
      `${a.instance} is neither on ${data.host} nor running on ${a.host}`,
      { retryable: true },
    );
  }
  try {
    const moved = await source.migrate(a.instance, a.generation, target);
    await record(state, data, moved.instance, a.host);
    await state.appendEvent({
      at: Date.now(),
      type: 'migrated',
      instance: a.instance,
      host: a.host,
      from: data.host,
      generation: a.generation,
      downtimeMs: Math.round(moved.downtimeMs * 1000) / 1000,
      // Real hosts: QEMU's own figure (its stop to the last byte) and the whole migration's time.
      ...(moved.qemuDowntimeMs === undefined ? {} : { qemuDowntimeMs: moved.qemuDowntimeMs }),
      ...(moved.durationMs === undefined ? {} : { durationMs: moved.durationMs }),
    });
    return 'done';
  } catch (e) {
    if (!isVfleetError(e) || e.code !== 'migration-failed') throw e;
    await state.appendEvent({
      at: Date.now(),
      type: 'migration-fallback',
      instance: a.instance,
      host: a.host,
      from: data.host,
      cause: e.message,
    });
  }
  // Stop, copy, start: the disk copied while stopped (consistent), then the source removed.
  const started = Date.now();
  if (now.status === 'running') await source.stop(a.instance, a.generation);
  await source.copyDisk(a.instance, a.generation, target);
  const created = await target.create(request(data));
  await source.destroy(a.instance, a.generation);
  await record(state, data, created, a.host);
  await state.appendEvent({
    at: Date.now(),
    type: 'moved-stop-copy-start',
    instance: a.instance,
    host: a.host,
    from: data.host,
    downtimeMs: Date.now() - started,
  });
  return 'done';
}
