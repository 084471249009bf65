// Reading a spec file: the I/O half of `read, then parse` (habit 7, docs/architecture.md), with
// every file the spec names that vfleet reads (packagesFrom inventories). The spec's hash covers
// them all: a saved plan made before an inventory changed is stale, as it is when the spec is.
import { createHash } from 'node:crypto';
import { existsSync, realpathSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve, sep } from 'node:path';
import type { Diagnostic, DiagnosticCode } from '../model/diagnostic.js';
import type { PackageVersions } from '../model/fleet.js';
import { parseInventory } from '../patching/inventory.js';
import { type LoadedFleet, loadFleet, positionOf } from '../spec/load-fleet.js';
import { MAX_SPEC_BYTES } from '../spec/source-text.js';
import { formatPath, quoteValue } from '../spec/spec-path.js';
import { FILE_LIMITS, readBoundedFileSync } from '../transport/bounded-file.js';

export { fleetNameHint } from './fleet-name-hint.js';

/**
 * A loaded spec, and the sha256 of the bytes it was read from (when they could be read): the
 * spec file's alone when it names no file vfleet reads, else the spec's and each read file's
 * (path and bytes, in the order read).
 */
export type ReadFleet = LoadedFleet & { readonly specHash?: string };

export interface ReadSpecOptions {
  /**
   * Folders besides the spec's repository that the files a spec names (packagesFrom, image
   * sources) may be in. Default: VFLEET_ALLOW_PATHS, colon-separated.
   */
  readonly allowPaths?: readonly string[];
}

/** VFLEET_ALLOW_PATHS as a list of folders. */
export function allowPathsFromEnv(env: NodeJS.ProcessEnv = process.env): string[] {
  return (env.VFLEET_ALLOW_PATHS ?? '').split(':').filter((p) => p.trim() !== '');
}

export function readAndLoadFleet(file: string, options: ReadSpecOptions = {}): ReadFleet {
  const failed = (message: string): LoadedFleet => {
    const diagnostic: Diagnostic = {
      severity: 'error',
      code: 'read-error',
      message,
      file,
      line: 1,
      column: 1,
      path: '',
    };
    return { fleet: undefined, document: undefined, diagnostics: [diagnostic] };
  };
  const read = readBoundedFileSync(file, MAX_SPEC_BYTES);
  if (!read.ok) {
    return failed(
      read.reason === 'does not exist'
        ? 'cannot read the file: no such file (run vfleet in the folder of your fleet.yaml, or pass -f PATH)'
        : `cannot read the file: it ${read.reason}`,
    );
  }
  const bytes = read.bytes;
  const loaded = loadFleet(bytes, file);
  if (!loaded.fleet) return { ...loaded, specHash: hashOf(bytes, []) };
  const files = new SpecFiles(file, bytes, options.allowPaths ?? allowPathsFromEnv());
  const fleet = withInventories(withLocalPaths(loaded, files), files);
  return { ...fleet, specHash: hashOf(bytes, files.read) };
}

function hashOf(
  spec: Uint8Array,
  read: ReadonlyArray<{ path: string; bytes: Uint8Array }>,
): string {
  const hash = createHash('sha256').update(spec);
  for (const file of read) hash.update(`\0${file.path}\0`).update(file.bytes);
  return hash.digest('hex');
}

/**
 * The files a spec names, and where they may be: inside the spec's repository (the git work
 * tree that holds it, or its folder outside git) or a folder allowed by VFLEET_ALLOW_PATHS,
 * after symbolic links are resolved. A spec from a pull request must not make vfleet read
 * /etc/shadow into its diagnostics or stage it to a host as an image.
 */
class SpecFiles {
  readonly diagnostics: Diagnostic[] = [];
  /** The files read besides the spec, in order: what the spec's hash covers. */
  readonly read: Array<{ path: string; bytes: Uint8Array }> = [];
  private readonly roots: string[];
  private readonly specDir: string;

  constructor(
    private readonly specFile: string,
    private readonly bytes: Uint8Array,
    allowPaths: readonly string[],
  ) {
    this.specDir = dirname(resolve(specFile));
    const realOrSelf = (path: string) => {
      try {
        return realpathSync(path);
      } catch {
        return resolve(path);
      }
    };
    this.roots = [repositoryOf(realOrSelf(this.specDir)), ...allowPaths.map(realOrSelf)];
  }

  /** The path as written, absolute (relative to the spec's folder, or under `~/`). */
  absolute(path: string): string {
    return resolve(this.specDir, path.replace(/^~\//, `${homedir()}/`));
  }

  /**
   * The absolute path when it may be read; otherwise an `outside-repository` error at the field.
   * A path that does not exist yet is checked as written (the read reports it missing).
   */
  confined(written: string, field: readonly (string | number)[]): string | undefined {
    const path = this.absolute(written);
    let real: string;
    try {
      real = realpathSync(path);
    } catch {
      real = path;
    }
    if (this.roots.some((root) => real === root || real.startsWith(`${root}${sep}`))) return path;
    this.error(
      'outside-repository',
      `${quoteValue(written)} is outside the spec's repository (${this.roots[0]}); vfleet reads only files in it, or in a folder named in VFLEET_ALLOW_PATHS`,
      field,
    );
    return undefined;
  }

  error(code: DiagnosticCode, message: string, field: readonly (string | number)[]): void {
    const { line, column } = positionOf(this.bytes, field);
    this.diagnostics.push({
      severity: 'error',
      code,
      message,
      file: this.specFile,
      line,
      column,
      path: formatPath(field),
    });
  }
}

/** The git work tree that holds `dir` (a `.git` folder, or file in a worktree), else `dir`. */
function repositoryOf(dir: string): string {
  for (let at = dir; ; at = dirname(at)) {
    if (existsSync(join(at, '.git'))) return at;
    if (dirname(at) === at) return dir;
  }
}

const SOURCE_KEYS = ['rootfs', 'disk', 'kernel', 'initrd'] as const;

/**
 * Local paths in a spec (image sources, identity files) are relative to the spec's folder or
 * under `~/`; from here on they are absolute, so a worker in another folder finds the same files.
 * Image sources must be inside the repository (SpecFiles); identity files need not be: vfleet
 * only signs with the key and never shows or sends its content.
 */
function withLocalPaths(loaded: LoadedFleet, files: SpecFiles): LoadedFleet {
  const fleet = loaded.fleet;
  if (!fleet) return loaded;
  const images = fleet.images.map((image, i) => {
    const source = image.source === undefined ? undefined : { ...image.source };
    for (const key of SOURCE_KEYS) {
      const path = source?.[key];
      if (path === undefined) continue;
      const confined = files.confined(path, ['spec', 'images', i, 'source', key]);
      if (confined !== undefined && source) source[key] = confined;
    }
    const guest =
      image.guest === undefined
        ? undefined
        : { ...image.guest, identityFile: files.absolute(image.guest.identityFile) };
    return { ...image, source, guest };
  });
  const hosts = fleet.hosts.map((host) =>
    host.ssh?.identityFile === undefined
      ? host
      : { ...host, ssh: { ...host.ssh, identityFile: files.absolute(host.ssh.identityFile) } },
  );
  return { ...loaded, fleet: { ...fleet, images, hosts } };
}

/**
 * Images and hosts may take their package inventory from a file (`packagesFrom`, relative to the
 * spec's folder, inside its repository); inline `packages` entries override it. Read here (a
 * regular file of at most FILE_LIMITS.inventory), parsed by patching/inventory.ts.
 */
function withInventories(loaded: LoadedFleet, files: SpecFiles): LoadedFleet {
  const fleet = loaded.fleet;
  if (!fleet) return loaded;
  const inventories: Diagnostic[] = [];
  const withInventory = <
    T extends { name: string; packages: PackageVersions; packagesFrom: string | undefined },
  >(
    section: 'images' | 'hosts',
    subject: T,
    index: number,
  ): T => {
    if (subject.packagesFrom === undefined) return subject;
    const field = ['spec', section, index, 'packagesFrom'];
    const path = files.confined(subject.packagesFrom, field);
    if (path === undefined) return subject;
    const read = readBoundedFileSync(path, FILE_LIMITS.inventory);
    if (!read.ok) {
      files.error(
        'read-error',
        `cannot read the package inventory ${quoteValue(subject.packagesFrom)}: it ${read.reason}`,
        field,
      );
      return subject;
    }
    files.read.push({ path, bytes: read.bytes });
    const inventory = parseInventory(read.bytes.toString('utf8'), path);
    inventories.push(...inventory.diagnostics);
    return { ...subject, packages: { ...inventory.packages, ...subject.packages } };
  };
  const images = fleet.images.map((image, i) => withInventory('images', image, i));
  const hosts = fleet.hosts.map((host, i) => withInventory('hosts', host, i));
  // The spec's own diagnostics first, in line order; then each inventory's.
  const diagnostics = [
    ...[...loaded.diagnostics, ...files.diagnostics].sort(
      (a, b) => a.line - b.line || a.column - b.column,
    ),
    ...inventories,
  ];
  const failed = diagnostics.some((d) => d.severity === 'error');
  return {
    fleet: failed ? undefined : { ...fleet, images, hosts },
    document: failed ? undefined : loaded.document,
    diagnostics,
  };
}
