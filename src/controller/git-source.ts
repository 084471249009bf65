// The controller's spec from a git repository (`vfleet controller --git URL_OR_PATH [--ref main]
// [--path fleet.yaml]`), as Argo CD and Flux read theirs: fetched with the git CLI every interval
// (and at once when signalled: a forge's webhook, `vfleet reconcile --now`), each new commit
// checked out into a folder of its own, so a reconcile that still runs on the last commit never
// sees its files change under it. The spec is read from that folder with the same reader as a
// file, so the files it names (inventories) come from the same commit.
//
//   <cacheDir>/repo/          a git repository holding what was fetched (shallow)
//   <cacheDir>/rev-<commit>/  one commit's files (a git worktree); the two newest are kept
//
// git runs with an argument vector (never a shell), `--end-of-options` before the URL, no
// terminal prompts, a time limit and bounded output.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { readValidSpec, type SpecRead } from '../app/session.js';
import { VfleetError } from '../model/errors.js';
import { redactUrl, type SourceRevision } from '../model/source.js';
import type { SpecSource } from './controller.js';

const GIT_TIMEOUT_MS = 120_000;
const GIT_MAX_OUTPUT = 1024 * 1024;

export interface GitSourceOptions {
  /** A URL git understands, or a local repository's path. */
  readonly url: string;
  readonly ref: string;
  /** The spec's path inside the repository. */
  readonly path: string;
  /** Where the fetched repository and checkouts live (default `.vfleet/git/<id>` in cwd). */
  readonly cacheDir: string;
  /** How often to fetch when nothing signals a push. */
  readonly intervalMs: number;
  /** How git is run (default: the git CLI as below; a test counts the fetches through it). */
  readonly git?: GitRunner;
}

/** Runs git with an argument vector in `cwd`; resolves with its standard output. */
export type GitRunner = (args: readonly string[], cwd?: string) => Promise<string>;

function runGit(args: readonly string[], cwd?: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    execFile(
      'git',
      args as string[],
      {
        ...(cwd ? { cwd } : {}),
        timeout: GIT_TIMEOUT_MS,
        maxBuffer: GIT_MAX_OUTPUT,
        env: {
          ...process.env,
          GIT_TERMINAL_PROMPT: '0',
          GIT_ASKPASS: 'true',
          LC_ALL: 'C',
        },
      },
      (error, stdout, stderr) => {
        if (!error) return resolvePromise(stdout);
        const why =
          String(stderr).trim().split('\n').filter(Boolean).slice(-1)[0] ??
          (error as Error).message;
        reject(new VfleetError('git-failed', `git ${args[0]}: ${why.slice(0, 300)}`));
      },
    );
  });
}

/** The default cache folder for a repository and ref, under `<cwd>/.vfleet/git/`. */
export function gitCacheDir(cwd: string, url: string, ref: string): string {
  const id = createHash('sha256').update(`${url}\n${ref}`).digest('hex').slice(0, 16);
  return join(cwd, '.vfleet', 'git', id);
}

/** A local path is made absolute (the controller may run elsewhere than where it was named). */
export function normalizeGitUrl(url: string, cwd: string): string {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url) || /^[^/]+@[^/:]+:/.test(url)) return url;
  return isAbsolute(url) ? url : resolve(cwd, url);
}

export class GitSpecSource implements SpecSource {
  readonly describe: string;
  private readonly repo: string;
  private commit: string | undefined;
  private revisionNow: SourceRevision | undefined;
  private fetching: Promise<void> | null = null;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private error: string | undefined;
  private wake: (() => void) | undefined;
  /** fetchNow was called since the last fetch began: fetch again at once. */
  private asked = false;
  /** fetchNow's callers, resolved when the next fetch to begin has ended. */
  private waiting: (() => void)[] = [];
  private readonly git: GitRunner;

  constructor(private readonly options: GitSourceOptions) {
    if (!/^[A-Za-z0-9._/-]+$/.test(options.ref) || options.ref.startsWith('-'))
      throw new VfleetError('usage', `--ref ${JSON.stringify(options.ref)} is not a branch or tag`);
    if (options.path.split('/').includes('..') || isAbsolute(options.path))
      throw new VfleetError('usage', `--path ${options.path} must be a path inside the repository`);
    this.describe = `${redactUrl(options.url)}@${options.ref}:${options.path}`;
    this.repo = join(options.cacheDir, 'repo');
    this.git = options.git ?? runGit;
  }

  /** Fetches once (the first commit must be there before the controller starts), then every interval. */
  async start(): Promise<void> {
    await this.fetchOnce();
    if (this.commit === undefined)
      throw new VfleetError('git-failed', this.error ?? 'nothing fetched');
    const loop = async () => {
      while (!this.closed) {
        if (!this.asked)
          await new Promise<void>((r) => {
            this.wake = r;
            this.timer = setTimeout(r, this.options.intervalMs);
          });
        clearTimeout(this.timer);
        this.wake = undefined;
        if (this.closed) break;
        this.asked = false;
        const waiting = this.waiting.splice(0);
        await this.fetchOnce();
        for (const resolve of waiting) resolve();
      }
      for (const resolve of this.waiting.splice(0)) resolve();
    };
    void loop();
  }

  /**
   * A push was signalled: fetch now. Calls that come while a fetch runs (it may have read the
   * ref before the push) make one more fetch after it, however many they are.
   */
  fetchNow(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.asked = true;
      this.wake?.();
    });
  }

  close(): void {
    this.closed = true;
    this.wake?.();
    for (const resolve of this.waiting.splice(0)) resolve();
  }

  signature(): string {
    return this.commit ?? 'none';
  }

  revision(): SourceRevision | undefined {
    return this.revisionNow;
  }

  /** The last fetch's failure, or undefined when it worked. */
  lastError(): string | undefined {
    return this.error;
  }

  read(): SpecRead {
    const commit = this.commit;
    if (commit === undefined) throw new VfleetError('git-failed', 'nothing fetched yet');
    const read = readValidSpec(join(this.checkout(commit), this.options.path));
    // Diagnostics name the file in the repository and the commit, not the checkout folder.
    const dir = `${this.checkout(commit)}/`;
    const shown = (file: string) =>
      file.startsWith(dir) ? `${file.slice(dir.length)}@${commit.slice(0, 7)}` : file;
    const diagnostics = read.diagnostics.map((d) => ({ ...d, file: shown(d.file) }));
    return (
      read.ok && this.revisionNow
        ? { ...read, diagnostics, revision: this.revisionNow }
        : { ...read, diagnostics }
    ) as SpecRead;
  }

  private checkout(commit: string): string {
    return join(this.options.cacheDir, `rev-${commit}`);
  }

  private fetchOnce(): Promise<void> {
    this.fetching ??= this.fetch()
      .then(
        () => {
          this.error = undefined;
        },
        (e) => {
          this.error = e instanceof Error ? e.message : String(e);
        },
      )
      .finally(() => {
        this.fetching = null;
      });
    return this.fetching;
  }

  private async fetch(): Promise<void> {
    if (!existsSync(join(this.repo, '.git'))) {
      mkdirSync(this.repo, { recursive: true });
      await this.git(['init', '-q', this.repo]);
    }
    await this.git(
      [
        'fetch',
        '-q',
        '--no-tags',
        '--depth',
        '1',
        '--end-of-options',
        this.options.url,
        this.options.ref,
      ],
      this.repo,
    );
    const commit = (
      await this.git(['rev-parse', '--verify', 'FETCH_HEAD^{commit}'], this.repo)
    ).trim();
    if (!/^[0-9a-f]{40,64}$/.test(commit)) throw new VfleetError('git-failed', 'no commit fetched');
    if (commit === this.commit) return;
    const dir = this.checkout(commit);
    if (!existsSync(dir)) {
      await this.git(['worktree', 'prune'], this.repo);
      await this.git(['worktree', 'add', '-q', '--detach', '--force', dir, commit], this.repo);
    }
    const [author, date, subject] = (
      await this.git(['log', '-1', '--format=%an <%ae>%x00%aI%x00%s', commit], this.repo)
    )
      .trim()
      .split('\0');
    this.revisionNow = {
      kind: 'git',
      url: redactUrl(this.options.url),
      ref: this.options.ref,
      path: this.options.path,
      commit,
      ...(author ? { author } : {}),
      ...(date ? { date } : {}),
      ...(subject ? { subject } : {}),
    };
    const previous = this.commit;
    this.commit = commit;
    await this.removeOldCheckouts(new Set([commit, ...(previous ? [previous] : [])]));
  }

  /** Keeps the current and the previous commit's folders (a reconcile may still read the latter). */
  private async removeOldCheckouts(keep: ReadonlySet<string>): Promise<void> {
    for (const entry of readdirSync(this.options.cacheDir)) {
      if (!entry.startsWith('rev-') || keep.has(entry.slice(4))) continue;
      await this.git(
        ['worktree', 'remove', '--force', join(this.options.cacheDir, entry)],
        this.repo,
      ).catch(() => undefined);
    }
  }
}
