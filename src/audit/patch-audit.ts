// The patch audit: every subject (instance or host) against its baseline, package by package,
// compared as dpkg compares versions; a summary per package (how many subjects need the update)
// and per baseline (how many subjects comply).
import type { Fleet, PackageVersions } from '../model/fleet.js';
import { evaluateBaseline, type PackageStatus } from '../patching/baseline.js';
import type { AuditInput } from './audit-input.js';

export type SubjectStatus = 'compliant' | 'non-compliant' | 'not-applicable';

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
}

export interface PackageRow {
  readonly subject: string;
  readonly kind: 'instance' | 'host';
  readonly baseline: string;
  readonly package: string;
  readonly installed: string | null;
  readonly required: string;
  readonly status: PackageStatus;
}

export interface PackageSummary {
  readonly package: string;
  readonly baseline: string;
  readonly required: string;
  readonly outdated: number;
  readonly missing: number;
  /** Subjects checked for it (applicable ones). */
  readonly subjects: number;
}

export interface BaselineSummary {
  readonly baseline: string;
  readonly subjects: number;
  readonly compliant: number;
  readonly nonCompliant: number;
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
  const perPackage = new Map<
    string,
    {
      outdated: number;
      missing: number;
      subjects: number;
      required: string;
      baseline: string;
      package: string;
    }
  >();
  const perBaseline = new Map<
    string,
    { subjects: number; compliant: number; nonCompliant: number; notApplicable: number }
  >();
  for (const s of subjects) {
    const baseline = baselines.get(s.baseline);
    if (!baseline) continue;
    const tally = perBaseline.get(s.baseline) ?? {
      subjects: 0,
      compliant: 0,
      nonCompliant: 0,
      notApplicable: 0,
    };
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
      });
      continue;
    }
    const count = (status: PackageStatus) =>
      result.packages.filter((p) => p.status === status).length;
    const outdated = count('outdated');
    const missing = count('missing');
    const ok = outdated + missing === 0;
    if (ok) tally.compliant++;
    else tally.nonCompliant++;
    results.push({
      ...pick(s),
      os,
      status: ok ? 'compliant' : 'non-compliant',
      compliant: count('compliant'),
      outdated,
      missing,
    });
    for (const p of result.packages) {
      rows.push({
        subject: s.subject,
        kind: s.kind,
        baseline: s.baseline,
        package: p.package,
        installed: p.installed,
        required: p.required,
        status: p.status,
      });
      const key = `${s.baseline}\u0000${p.package}`;
      const summary = perPackage.get(key) ?? {
        package: p.package,
        baseline: s.baseline,
        required: p.required,
        outdated: 0,
        missing: 0,
        subjects: 0,
      };
      perPackage.set(key, summary);
      summary.subjects++;
      if (p.status === 'outdated') summary.outdated++;
      if (p.status === 'missing') summary.missing++;
    }
  }
  const byPackage = [...perPackage.values()].sort(
    (a, b) =>
      b.outdated + b.missing - (a.outdated + a.missing) ||
      byName(a.package, b.package) ||
      byName(a.baseline, b.baseline),
  );
  return {
    subjects: results,
    packages: rows,
    byPackage,
    baselines: fleet.patchBaselines.map((b) => ({
      baseline: b.name,
      ...(perBaseline.get(b.name) ?? {
        subjects: 0,
        compliant: 0,
        nonCompliant: 0,
        notApplicable: 0,
      }),
    })),
    unaudited,
  };
}

function pick(s: Subject) {
  return { subject: s.subject, kind: s.kind, host: s.host, group: s.group, baseline: s.baseline };
}
