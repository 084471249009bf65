// Where a fleet's spec came from: a file, or a commit of a git repository (Argo CD's
// `status.sync.revision`). Plans, status and audits carry it (`source` in their JSON), the
// state records the one the fleet was last brought to, and the controller publishes its sync
// status against it (docs/reconcile.md, "Git").

export interface SourceRevision {
  readonly kind: 'git' | 'file';
  /** git: the repository's URL or path (its `origin` for a file in a work tree). */
  readonly url?: string;
  /** git: the branch or tag followed (a file in a work tree: its branch, when on one). */
  readonly ref?: string;
  /** The spec's path (inside the repository for git). */
  readonly path: string;
  readonly commit?: string;
  readonly author?: string;
  /** The commit's author date, ISO 8601. */
  readonly date?: string;
  /** The first line of the commit message. */
  readonly subject?: string;
  /** A file in a work tree with changes not committed: the commit is not the whole story. */
  readonly dirty?: boolean;
}

/** Argo CD's sync status of a fleet or an instance. */
export type SyncStatus = 'Synced' | 'OutOfSync' | 'Unknown';

/** Argo CD's health of a fleet or an instance. */
export type SyncHealth =
  | 'Healthy'
  | 'Progressing'
  | 'Degraded'
  | 'Missing'
  | 'Unknown'
  | 'Suspended';

/** A URL with any user or password taken out (https://user:token@host/… → https://host/…). */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@]*@/i, '$1');
}

/** One line naming a revision: `git <url>@<ref> <commit7> "<subject>"` or `file <path>`. */
export function revisionLine(r: SourceRevision | undefined): string {
  if (!r) return 'unknown';
  if (r.kind === 'file' && !r.commit) return `file ${r.path}`;
  const at = r.ref ? `@${r.ref}` : '';
  const commit = r.commit ? ` ${r.commit.slice(0, 7)}${r.dirty ? '+dirty' : ''}` : '';
  const subject = r.subject ? ` "${r.subject}"` : '';
  return `git ${r.url ?? ''}${at}:${r.path}${commit}${subject}`;
}
