// The leader's sync status × health of the fleet against its source (Argo CD's model; the rules
// are in docs/reconcile.md, "Sync status and health"): published to `vfleet:{F}:sync` for
// `status` and `/metrics`, and the revision the fleet was last brought to cleanly recorded in
// `vfleet:{F}:revision`.
import { describeFileSource } from '../app/source.js';
import type { SourceRevision, SyncHealth, SyncStatus } from '../model/source.js';
import type { ControlState, PublishedSync } from '../state/control-state.js';
import type { SpecSource } from './controller.js';

export class SyncReporter {
  private synced: SourceRevision | undefined;
  private last: PublishedSync | undefined;

  constructor(
    private readonly source: SpecSource,
    private readonly clock: () => number,
  ) {}

  /** The source's newest revision: the git source's commit, or the spec file's own. */
  async target(file: string): Promise<SourceRevision> {
    return this.source.revision?.() ?? (await describeFileSource(file));
  }

  /** What was published last (metrics read it without a round trip). */
  current(): PublishedSync | undefined {
    return this.last;
  }

  async publish(
    control: ControlState,
    file: string,
    status: SyncStatus,
    health: SyncHealth,
    message: string,
    options: { readonly applied?: boolean; readonly suspended?: boolean } = {},
  ): Promise<void> {
    const target = await this.target(file);
    if (options.applied) {
      this.synced = target;
      await control.recordRevision({ ...target, appliedAt: this.clock() });
    }
    this.synced ??= await control.recordedRevision().catch(() => undefined);
    const sync: PublishedSync = {
      status,
      health,
      source: this.source.describe,
      target,
      ...(this.synced ? { synced: this.synced } : {}),
      message,
      ...(options.suspended ? { suspended: true } : {}),
      at: this.clock(),
    };
    this.last = sync;
    await control.publishSync(sync);
  }
}
