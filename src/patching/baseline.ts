// Patch baseline evaluation: each package a baseline names is compliant (installed at or above
// its minimum, compared as dpkg does), outdated (installed below it) or missing; a subject whose
// OS the baseline does not apply to is not-applicable as a whole.
import { osMatches, type PackageVersions, type PatchBaseline } from '../model/fleet.js';
import { compareDebianVersions } from './debian-version.js';

export type PackageStatus = 'compliant' | 'outdated' | 'missing';

export interface PackageFinding {
  readonly package: string;
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

export function evaluateBaseline(
  baseline: Pick<PatchBaseline, 'appliesTo' | 'minimum'>,
  os: { readonly family: string; readonly release: string; readonly arch: string },
  installed: PackageVersions,
): BaselineResult {
  if (!baselineApplies(baseline, os)) return { applicable: false };
  const packages = Object.entries(baseline.minimum)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([name, required]): PackageFinding => {
      const version =
        installed[name] ?? installed[`${name}:${os.arch === 'x86_64' ? 'amd64' : os.arch}`];
      if (version === undefined)
        return { package: name, installed: null, required, status: 'missing' };
      return {
        package: name,
        installed: version,
        required,
        status: compareDebianVersions(version, required) >= 0 ? 'compliant' : 'outdated',
      };
    });
  return { applicable: true, packages };
}
