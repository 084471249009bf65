// The source of a spec file as plan, apply and audit report it: the commit it is at when the file
// lies in a git work tree (what CI plans on a pull request), else just the file. Asked of the git
// CLI with an argument vector and a time limit; no git, or not a work tree, is simply a file.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { redactUrl, type SourceRevision } from '../model/source.js';

function git(args: readonly string[], cwd: string): Promise<string | undefined> {
  return new Promise((done) => {
    execFile(
      'git',
      args as string[],
      { cwd, timeout: 5_000, maxBuffer: 256 * 1024, env: { ...process.env, LC_ALL: 'C' } },
      (error, stdout) => done(error ? undefined : String(stdout).trim()),
    );
  });
}

/**
 * The source of a session's spec: the reader's own (a git source's commit), else the file's,
 * asked of git once per session (a session's spec never changes; a controller makes a new
 * session for a new spec), so a controller reconciling every interval does not run git each time.
 */
const bySession = new WeakMap<object, Promise<SourceRevision>>();
export function sessionSource(session: {
  readonly file: string;
  readonly revision?: SourceRevision;
}): Promise<SourceRevision> {
  if (session.revision) return Promise.resolve(session.revision);
  let known = bySession.get(session);
  if (!known) {
    known = describeFileSource(session.file);
    bySession.set(session, known);
  }
  return known;
}

// What git said of a file a moment ago: many sessions on one file in one process (the
// controller's simulation opens thousands) ask git once every few seconds, not each time.
const RECENT_MS = 5_000;
const recent = new Map<string, { at: number; source: Promise<SourceRevision> }>();

export function describeFileSource(file: string): Promise<SourceRevision> {
  const path = resolve(file);
  const now = Date.now();
  const known = recent.get(path);
  if (known && now - known.at < RECENT_MS) return known.source;
  const source = askGit(file, path);
  recent.set(path, { at: now, source });
  if (recent.size > 64) recent.delete(recent.keys().next().value as string);
  return source;
}

/**
 * Whether git could find a work tree from `dir`: a `.git` in it or above, or git told where by
 * the environment. Outside one (most folders a fleet is tried in) no git is run at all.
 */
function maybeInGitTree(dir: string): boolean {
  if (process.env.GIT_DIR !== undefined || process.env.GIT_WORK_TREE !== undefined) return true;
  for (let d = dir; ; d = dirname(d)) {
    if (existsSync(join(d, '.git'))) return true;
    if (dirname(d) === d) return false;
  }
}

async function askGit(file: string, path: string): Promise<SourceRevision> {
  const dir = dirname(path);
  if (!maybeInGitTree(dir)) return { kind: 'file', path: file };
  const top = await git(['rev-parse', '--show-toplevel'], dir);
  if (!top) return { kind: 'file', path: file };
  const inRepo = relative(top, path) || basename(path);
  const [head, branch, origin, log, changed] = await Promise.all([
    git(['rev-parse', '--verify', 'HEAD'], dir),
    git(['symbolic-ref', '--short', '-q', 'HEAD'], dir),
    git(['config', '--get', 'remote.origin.url'], dir),
    git(['log', '-1', '--format=%an <%ae>%x00%aI%x00%s', 'HEAD'], dir),
    git(['status', '--porcelain', '--', inRepo], top),
  ]);
  if (!head) return { kind: 'file', path: file };
  const [author, date, subject] = (log ?? '').split('\0');
  return {
    kind: 'git',
    // A credential in a remote URL (https://user:token@…) never leaves this function.
    url: redactUrl(origin ?? top),
    ...(branch ? { ref: branch } : {}),
    path: inRepo,
    commit: head,
    ...(author ? { author } : {}),
    ...(date ? { date } : {}),
    ...(subject ? { subject } : {}),
    ...(changed ? { dirty: true } : {}),
  };
}
