// Reading a spec file: the I/O half of `read, then parse` (STYLE.md #7).
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, resolve } from 'node:path';
import type { Diagnostic } from '../model/diagnostic.js';
import type { PackageVersions } from '../model/fleet.js';
import { parseInventory } from '../spec/inventory.js';
import { type LoadedFleet, loadFleet } from '../spec/load-fleet.js';
import { MAX_SPEC_BYTES } from '../spec/source-text.js';

/** A loaded spec, and the sha256 of the bytes it was read from (when they could be read). */
export type ReadFleet = LoadedFleet & { readonly specHash?: string };

export function readAndLoadFleet(file: string): ReadFleet {
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
  let bytes: Buffer;
  try {
    const stat = statSync(file);
    if (stat.isDirectory()) return failed('is a directory, not a fleet spec file');
    // Refuse before reading a huge file into memory; decodeSource says the same for bytes.
    if (stat.size > MAX_SPEC_BYTES) {
      return failed(
        `the file is ${stat.size} bytes; a fleet spec may be at most ${MAX_SPEC_BYTES} bytes`,
      );
    }
    bytes = readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const reasons: Record<string, string> = {
      ENOENT: 'no such file (run vfleet in the folder of your fleet.yaml, or pass -f PATH)',
      EACCES: 'permission denied',
      EISDIR: 'is a directory, not a fleet spec file',
    };
    return failed(`cannot read the file: ${reasons[code ?? ''] ?? code ?? 'unknown error'}`);
  }
  const specHash = createHash('sha256').update(bytes).digest('hex');
  return { ...withInventories(withLocalPaths(loadFleet(bytes, file), file), file), specHash };
}

/**
 * Local paths in a spec (image sources, identity files) are relative to the spec's folder or
 * under `~/`; from here on they are absolute, so a worker in another folder finds the same files.
 */
function withLocalPaths(loaded: LoadedFleet, specFile: string): LoadedFleet {
  const fleet = loaded.fleet;
  if (!fleet) return loaded;
  const absolute = (path: string) =>
    resolve(dirname(specFile), path.replace(/^~\//, `${homedir()}/`));
  const images = fleet.images.map((image) => {
    if (image.source === undefined) return image;
    const source = { ...image.source };
    for (const key of ['rootfs', 'disk', 'kernel', 'initrd'] as const) {
      const path = source[key];
      if (path !== undefined) source[key] = absolute(path);
    }
    return { ...image, source };
  });
  const hosts = fleet.hosts.map((host) =>
    host.ssh?.identityFile === undefined
      ? host
      : { ...host, ssh: { ...host.ssh, identityFile: absolute(host.ssh.identityFile) } },
  );
  return { ...loaded, fleet: { ...fleet, images, hosts } };
}

/**
 * Images and hosts may take their package inventory from a file (`packagesFrom`, relative to the
 * spec's folder); inline `packages` entries override it. Read here, parsed by spec/inventory.ts.
 */
function withInventories(loaded: LoadedFleet, specFile: string): LoadedFleet {
  const fleet = loaded.fleet;
  if (!fleet) return loaded;
  if (![...fleet.images, ...fleet.hosts].some((x) => x.packagesFrom !== undefined)) return loaded;
  const diagnostics = [...loaded.diagnostics];
  const withInventory = <
    T extends { name: string; packages: PackageVersions; packagesFrom: string | undefined },
  >(
    what: 'image' | 'host',
    subject: T,
  ): T => {
    if (subject.packagesFrom === undefined) return subject;
    const path = resolve(dirname(specFile), subject.packagesFrom.replace(/^~\//, `${homedir()}/`));
    let text: string;
    try {
      if (statSync(path).size > MAX_SPEC_BYTES) throw new Error('too large');
      text = readFileSync(path, 'utf8');
    } catch {
      diagnostics.push({
        severity: 'error',
        code: 'read-error',
        message: `cannot read the package inventory of ${what} ${subject.name} (packagesFrom: ${subject.packagesFrom})`,
        file: path,
        line: 1,
        column: 1,
        path: '',
      });
      return subject;
    }
    const inventory = parseInventory(text, path);
    diagnostics.push(...inventory.diagnostics);
    return { ...subject, packages: { ...inventory.packages, ...subject.packages } };
  };
  const images = fleet.images.map((image) => withInventory('image', image));
  const hosts = fleet.hosts.map((host) => withInventory('host', host));
  const failed = diagnostics.some((d) => d.severity === 'error');
  return {
    fleet: failed ? undefined : { ...fleet, images, hosts },
    document: failed ? undefined : loaded.document,
    diagnostics,
  };
}
