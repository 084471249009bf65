// The patch audit: every subject (instance or host) against its baseline, package by package,
// compared as dpkg compares versions; a summary per package (how many subjects need the update)
// and per baseline (how many subjects comply). An instance's last patch, as its host reported
// it, says more of the packages it touched: at their version but waiting for a reboot
// (`pending-reboot`, AWS Patch Manager's InstalledPendingReboot), or below it because the patch
// failed (`failed`). Baseline entries marked `security: true` are counted apart.
import type { Fleet, PackageVersions } from '../model/fleet.js';
import type { PatchStatus } from '../model/instances.js';
import { type PackageStatus as BaselineStatus, evaluateBaseline } from '../patching/baseline.js';
import type { AuditInput } from './audit-input.js';

/** A package of a subject: the baseline's verdict, refined by the subject's last patch. */
export type PackageStatus = BaselineStatus | 'pending-reboot' | 'failed';

/**
 * failed: a package its last patch was to raise is still below its baseline; non-compliant:
 * others are below; pending-reboot: all at their baseline, some waiting for a reboot.
 */
export type SubjectStatus =
  | 'compliant'
  | 'pending-reboot'
  | 'non-compliant'
  | 'failed'
  | 'not-applicable';

export interface SubjectResult {
  readonly subject: string;
  readonly kind: 'instance' | 'host';
  /** The host it runs on (for a host: itself). */
  readonly host: string;
  readonly group: string | null;
  readonly baseline: string;
  readonly os: string;
  readonly status: SubjectStatus;
  readonly compliant: number;
  readonly outdated: number;
  readonly missing: number;
  readonly pendingReboot: number;
  readonly failed: number;
  /** The last patch's error, when it failed. */
  readonly error?: string;
}

export interface PackageRow {
  readonly subject: string;
  readonly kind: 'instance' | 'host';
  readonly baseline: string;
  readonly package: string;
  readonly installed: string | null;
  readonly required: string;
  readonly status: PackageStatus;
  /** The baseline's entry says `security: true`. */
  readonly security: boolean;
}

export interface PackageSummary {
  readonly package: string;
  readonly baseline: string;
  readonly required: string;
  readonly security: boolean;
  readonly outdated: number;
  readonly missing: number;
  readonly pendingReboot: number;
  readonly failed: number;
  /** Subjects checked for it (applicable ones). */
  readonly subjects: number;
}

export interface BaselineSummary {
  readonly baseline: string;
  readonly subjects: number;
  readonly compliant: number;
  readonly nonCompliant: number;
  readonly pendingReboot: number;
  readonly failed: number;
  readonly notApplicable: number;
}

export interface PatchAudit {
  readonly subjects: readonly SubjectResult[];
  readonly packages: readonly PackageRow[];
  readonly byPackage: readonly PackageSummary[];
  readonly baselines: readonly BaselineSummary[];
  /** Instances and hosts no baseline names: not audited, counted so nobody thinks they were. */
  readonly unaudited: { readonly instances: number; readonly hosts: number };
}

interface Subject {
  readonly subject: string;
  readonly kind: 'instance' | 'host';
  readonly host: string;
  readonly group: string | null;
  readonly baseline: string;
  readonly os: { readonly family: string; readonly release: string; readonly arch: string };
  readonly packages: PackageVersions;
  readonly lastPatch?: PatchStatus | undefined;
}

function subjectsOf(input: AuditInput): {
  subjects: Subject[];
  unaudited: PatchAudit['unaudited'];
} {
  const { fleet } = input;
  const groups = new Map(fleet.groups.map((g) => [g.name, g]));
  const images = new Map(fleet.images.map((i) => [i.name, i]));
  const subjects: Subject[] = [];
  let instances = 0;
  let hosts = 0;
  for (const i of input.instances) {
    const baseline = groups.get(i.group)?.patchBaseline;
    const image = images.get(i.image);
    if (baseline === undefined || !image) {
      instances++;
      continue;
    }
    subjects.push({
      subject: i.instance,
      kind: 'instance',
      host: i.host,
      group: i.group,
      baseline,
      os: image.os,
      packages: i.packages,
      lastPatch: input.patchStatuses?.get(i.instance),
    });
  }
  for (const h of fleet.hosts) {
    if (h.patchBaseline === undefined) {
      hosts++;
      continue;
    }
    subjects.push({
      subject: h.name,
      kind: 'host',
      host: h.name,
      group: null,
      baseline: h.patchBaseline,
      os: h.os,
      packages: h.packages,
    });
  }
  return { subjects, unaudited: { instances, hosts } };
}

const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

export function patchAudit(input: AuditInput): PatchAudit {
  const fleet: Fleet = input.fleet;
  const baselines = new Map(fleet.patchBaselines.map((b) => [b.name, b]));
  const { subjects, unaudited } = subjectsOf(input);
  subjects.sort((a, b) => byName(a.kind, b.kind) || byName(a.subject, b.subject));
  const results: SubjectResult[] = [];
  const rows: PackageRow[] = [];
  const perPackage = new Map<string, Omit<PackageSummary, 'outdated'> & Counts>();
  const perBaseline = new Map<string, Omit<BaselineSummary, 'baseline'> & BaselineCounts>();
  for (const s of subjects) {
    const baseline = baselines.get(s.baseline);
    if (!baseline) continue;
    const tally = perBaseline.get(s.baseline) ?? emptyBaselineTally();
    perBaseline.set(s.baseline, tally);
    tally.subjects++;
    const os = `${s.os.family} ${s.os.release} ${s.os.arch}`;
    const result = evaluateBaseline(baseline, s.os, s.packages);
    if (!result.applicable) {
      tally.notApplicable++;
      results.push({
        ...pick(s),
        os,
        status: 'not-applicable',
        compliant: 0,
        outdated: 0,
        missing: 0,
        pendingReboot: 0,
        failed: 0,
      });
      continue;
    }
    const security = new Set(baseline.security ?? []);
    const statuses = result.packages.map((p) =>
      refined(p.status, p.installedAs ?? p.package, s.lastPatch),
    );
    const count = (status: PackageStatus) => statuses.filter((x) => x === status).length;
    const counts = {
      compliant: count('compliant'),
      outdated: count('outdated'),
      missing: count('missing'),
      pendingReboot: count('pending-reboot'),
      failed: count('failed'),
    };
    const status: SubjectStatus =
      counts.failed > 0
        ? 'failed'
        : counts.outdated + counts.missing > 0
          ? 'non-compliant'
          : counts.pendingReboot > 0
            ? 'pending-reboot'
            : 'compliant';
    tally[TALLY[status]]++;
    results.push({
      ...pick(s),
      os,
      status,
      ...counts,
      ...(counts.failed > 0 && s.lastPatch?.error ? { error: s.lastPatch.error } : {}),
    });
    result.packages.forEach((p, k) => {
      const packageStatus = statuses[k] as PackageStatus;
      rows.push({
        subject: s.subject,
        kind: s.kind,
        baseline: s.baseline,
        package: p.package,
        installed: p.installed,
        required: p.required,
        status: packageStatus,
        security: security.has(p.package),
      });
      const key = `${s.baseline}\u0000${p.package}`;
      const summary = perPackage.get(key) ?? {
        package: p.package,
        baseline: s.baseline,
        required: p.required,
        security: security.has(p.package),
        outdated: 0,
        missing: 0,
        pendingReboot: 0,
        failed: 0,
        subjects: 0,
      };
      perPackage.set(key, summary);
      summary.subjects++;
      if (packageStatus === 'outdated') summary.outdated++;
      if (packageStatus === 'missing') summary.missing++;
      if (packageStatus === 'pending-reboot') summary.pendingReboot++;
      if (packageStatus === 'failed') summary.failed++;
    });
  }
  const needing = (x: PackageSummary) => x.outdated + x.missing + x.failed;
  const byPackage = [...perPackage.values()].sort(
    (a, b) =>
      needing(b) - needing(a) || byName(a.package, b.package) || byName(a.baseline, b.baseline),
  );
  return {
    subjects: results,
    packages: rows,
    byPackage,
    baselines: fleet.patchBaselines.map((b) => ({
      baseline: b.name,
      ...(perBaseline.get(b.name) ?? emptyBaselineTally()),
    })),
    unaudited,
  };
}

interface Counts {
  outdated: number;
  missing: number;
  pendingReboot: number;
  failed: number;
  subjects: number;
}

interface BaselineCounts {
  subjects: number;
  compliant: number;
  nonCompliant: number;
  pendingReboot: number;
  failed: number;
  notApplicable: number;
}

const emptyBaselineTally = (): BaselineCounts => ({
  subjects: 0,
  compliant: 0,
  nonCompliant: 0,
  pendingReboot: 0,
  failed: 0,
  notApplicable: 0,
});

const TALLY: Record<SubjectStatus, keyof BaselineCounts> = {
  compliant: 'compliant',
  'non-compliant': 'nonCompliant',
  'pending-reboot': 'pendingReboot',
  failed: 'failed',
  'not-applicable': 'notApplicable',
};

/**
 * A package's status with its subject's last patch: below its baseline after a patch that was
 * to raise it and failed, `failed`; at its baseline, changed by a patch whose instance asks for
 * a reboot, `pending-reboot`.
 */
function refined(
  status: BaselineStatus,
  installedAs: string,
  last: PatchStatus | undefined,
): PackageStatus {
  if (last === undefined) return status;
  const touched = last.packages.includes(installedAs);
  if (!touched) return status;
  if (status !== 'compliant') return last.outcome === 'failed' ? 'failed' : status;
  return last.rebootRequired ? 'pending-reboot' : status;
}

function pick(s: Subject) {
  return { subject: s.subject, kind: s.kind, host: s.host, group: s.group, baseline: s.baseline };
}
