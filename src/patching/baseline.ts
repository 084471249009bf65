// Patch baseline evaluation: each package a baseline names is compliant (installed at or above
// its minimum, compared as dpkg does), outdated (installed below it) or missing; a subject whose
// OS the baseline does not apply to is not-applicable as a whole.
import { osMatches, type PackageVersions, type PatchBaseline } from '../model/fleet.js';
import { compareDebianVersions } from './debian-version.js';

export type PackageStatus = 'compliant' | 'outdated' | 'missing';

export interface PackageFinding {
  readonly package: string;
  /** The name the inventory has it under (`libc6:amd64` for a baseline's `libc6`), or null. */
  readonly installedAs: string | null;
  readonly installed: string | null;
  readonly required: string;
  readonly status: PackageStatus;
}

export type BaselineResult =
  | { readonly applicable: false }
  | { readonly applicable: true; readonly packages: readonly PackageFinding[] };

export function baselineApplies(
  baseline: Pick<PatchBaseline, 'appliesTo'>,
  os: { readonly family: string; readonly release: string; readonly arch: string },
): boolean {
  return osMatches(baseline.appliesTo, os);
}

/** A baseline's minimum, sorted by package name once per baseline object. */
const sortedMinimum = new WeakMap<object, ReadonlyArray<readonly [string, string]>>();

function minimumOf(baseline: Pick<PatchBaseline, 'minimum'>) {
  let sorted = sortedMinimum.get(baseline);
  if (!sorted) {
    sorted = Object.entries(baseline.minimum).sort(([a], [b]) => (a < b ? -1 : 1));
    sortedMinimum.set(baseline, sorted);
  }
  return sorted;
}

/** compareDebianVersions with a memory: a fleet has many instances but few distinct versions. */
export function memoizedCompare(): (a: string, b: string) => number {
  const known = new Map<string, number>();
  return (a, b) => {
    const key = `${a}\u0000${b}`;
    let result = known.get(key);
    if (result === undefined) {
      result = compareDebianVersions(a, b);
      known.set(key, result);
    }
    return result;
  };
}

export function evaluateBaseline(
  baseline: Pick<PatchBaseline, 'appliesTo' | 'minimum'>,
  os: { readonly family: string; readonly release: string; readonly arch: string },
  installed: PackageVersions,
  compare: (a: string, b: string) => number = compareDebianVersions,
): BaselineResult {
  if (!baselineApplies(baseline, os)) return { applicable: false };
  const packages = minimumOf(baseline).map(([name, required]): PackageFinding => {
    const key = installedKey(installed, name, os.arch);
    const version = key === null ? undefined : installed[key];
    if (key === null || version === undefined)
      return { package: name, installedAs: null, installed: null, required, status: 'missing' };
    return {
      package: name,
      installedAs: key,
      installed: version,
      required,
      status: compare(version, required) >= 0 ? 'compliant' : 'outdated',
    };
  });
  return { applicable: true, packages };
}

/** Debian's architecture name for an OS arch (dpkg qualifies multi-arch packages with it). */
const DPKG_ARCH: Readonly<Record<string, string>> = {
  x86_64: 'amd64',
  aarch64: 'arm64',
  i686: 'i386',
  ppc64le: 'ppc64el',
};

export const dpkgArch = (arch: string): string => DPKG_ARCH[arch] ?? arch;

/** Where an inventory has a package: its plain name, or qualified with the architecture. */
export function installedKey(
  installed: PackageVersions,
  name: string,
  arch: string,
): string | null {
  if (installed[name] !== undefined) return name;
  const qualified = `${name}:${dpkgArch(arch)}`;
  return installed[qualified] !== undefined ? qualified : null;
}

/** What must be raised for a subject to meet its baseline: installed name → minimum version. */
export function packagesToRaise(findings: readonly PackageFinding[]): PackageVersions {
  const raise: Record<string, string> = {};
  for (const f of findings) {
    if (f.status !== 'compliant') raise[f.installedAs ?? f.package] = f.required;
  }
  return raise;
}
