// A git repository of a fleet, in a temporary folder, as the tests of `vfleet controller --git`
// and its push webhook use one: git run in it by a fixed author, the root fleet committed, and
// commits that edit the spec.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { pollUntil, vfleet, workdir } from './vfleet-cli.js';

export interface FleetRepo {
  /** The repository's folder. */
  readonly dir: string;
  /** git with these arguments in the repository; its output, trimmed. */
  git(...args: string[]): string;
  /** Edits fleet.yaml and commits it; returns the commit. */
  commit(subject: string, edit: (spec: string) => string): string;
}

/** A new repository holding the root fleet.yaml (and its inventories), committed on `main`. */
export function fleetRepo(subject = 'the fleet'): FleetRepo {
  const dir = workdir();
  const git = (...args: string[]) =>
    execFileSync('git', args, {
      cwd: dir,
      encoding: 'utf8',
      env: {
        ...process.env,
        GIT_AUTHOR_NAME: 'Ada Operator',
        GIT_AUTHOR_EMAIL: 'ada@example.test',
        GIT_COMMITTER_NAME: 'Ada Operator',
        GIT_COMMITTER_EMAIL: 'ada@example.test',
      },
    }).trim();
  git('init', '-q', '-b', 'main');
  git('add', '-A');
  git('commit', '-q', '-m', subject);
  return {
    dir,
    git,
    commit(message, edit) {
      const path = `${dir}/fleet.yaml`;
      writeFileSync(path, edit(readFileSync(path, 'utf8')));
      git('commit', '-q', '-am', message);
      return git('rev-parse', 'HEAD');
    },
  };
}

/** The root fleet's batch group's replicas (whatever they say now), never another group's. */
const BATCH_REPLICAS = /(- name: batch\n(?:(?! *- name:).*\n)*? +replicas: )\S+/;

/** An edit setting the batch group's replicas to `n` (a number, or anything to make it invalid). */
export const batchReplicas = (n: number | string) => (spec: string) => {
  assert.match(spec, BATCH_REPLICAS);
  return spec.replace(BATCH_REPLICAS, `$1${n}`);
};

/** What these tests read of `vfleet status --json` about the fleet's sync. */
export interface SyncStatusJson {
  readonly sync: { readonly status: string; readonly target?: { readonly commit?: string } };
  readonly source: { readonly commit?: string } | null;
}

/** `vfleet status --json` in `cwd` (exit 0, or 2 when something is not right). */
export function statusJson<T extends SyncStatusJson>(cwd: string, env: NodeJS.ProcessEnv): T {
  const r = vfleet(['status', '--json'], cwd, env);
  assert.ok(r.code === 0 || r.code === 2, r.stderr + r.stdout);
  return JSON.parse(r.stdout) as T;
}

/** Polls status until the fleet is Synced at `commit`: the leader's target and the recorded one. */
export function syncedAt<T extends SyncStatusJson>(
  commit: string,
  cwd: string,
  env: NodeJS.ProcessEnv,
  deadlineMs: number,
): Promise<T> {
  return pollUntil(
    `Synced at ${commit.slice(0, 7)}`,
    () => {
      const s = statusJson<T>(cwd, env);
      return s.sync.status === 'Synced' &&
        s.sync.target?.commit === commit &&
        s.source?.commit === commit
        ? s
        : undefined;
    },
    deadlineMs,
  );
}
