// The audit report: the envelope every format renders — `{formatVersion, generatedAt, fleet,
// specHash, summary, findings}` and the full tables of each audit. A finding is something to act
// on (a pool short of licenses, a package below its baseline, a protected instance without a
// working failover host); the tables hold everything, compliant rows included.
import type { SourceRevision } from '../model/source.js';
import type { AuditInput, AuditSource } from './audit-input.js';
import { type FailoverAudit, failoverAudit, type ProtectionStatus } from './failover-audit.js';
import { type LicenseAudit, licenseAudit } from './license-audit.js';
import { type PatchAudit, patchAudit } from './patch-audit.js';

export const AUDIT_FORMAT_VERSION = '1';
export const AUDIT_KINDS = ['licenses', 'patches', 'failover'] as const;
export type AuditKind = (typeof AUDIT_KINDS)[number];

export interface LicenseFinding {
  readonly kind: 'licenses';
  readonly pool: string;
  readonly metric: string;
  readonly needed: number;
  readonly entitlement: number;
  readonly shortfall: number;
}

export interface PatchFinding {
  readonly kind: 'patches';
  readonly subject: string;
  readonly subjectKind: 'instance' | 'host';
  readonly baseline: string;
  readonly package: string;
  readonly installed: string | null;
  readonly required: string;
  readonly status: 'outdated' | 'missing' | 'pending-reboot' | 'failed';
  /** The baseline's entry says `security: true`. */
  readonly security: boolean;
}

export interface FailoverFinding {
  readonly kind: 'failover';
  readonly instance: string;
  readonly host: string;
  readonly domain: string;
  readonly failoverHost: string | null;
  readonly status: Exclude<ProtectionStatus, 'covered'>;
  /** rpo-exceeded: how old the replica is, and the objective. */
  readonly rpoSeconds?: number;
  readonly maxRpoSeconds?: number;
}

export type Finding = LicenseFinding | PatchFinding | FailoverFinding;

export interface AuditSummary {
  readonly findings: number;
  readonly licenses?: {
    readonly pools: number;
    readonly compliant: number;
    readonly shortfall: number;
    readonly findings: number;
  };
  readonly patches?: {
    readonly subjects: number;
    readonly compliant: number;
    readonly nonCompliant: number;
    readonly pendingReboot: number;
    readonly failed: number;
    readonly notApplicable: number;
    readonly findings: number;
    /** Findings on packages the baseline marks `security: true`, and on the others. */
    readonly securityFindings: number;
    readonly otherFindings: number;
  };
  readonly failover?: {
    readonly tolerate: number;
    readonly protected: number;
    readonly covered: number;
    readonly scenarios: number;
    readonly scenariosNotCovered: number;
    readonly findings: number;
  };
}

export interface AuditReport {
  readonly formatVersion: typeof AUDIT_FORMAT_VERSION;
  readonly generatedAt: string;
  readonly fleet: string;
  readonly specHash: string;
  /** The spec's revision: the git commit it is at, or the file (model/source.ts). */
  readonly revision?: SourceRevision;
  readonly source: AuditSource;
  readonly kinds: readonly AuditKind[];
  readonly summary: AuditSummary;
  readonly findings: readonly Finding[];
  readonly licenses?: LicenseAudit;
  readonly patches?: PatchAudit;
  readonly failover?: FailoverAudit;
}

export interface ReportMeta {
  /** An ISO 8601 instant from the caller's clock (SOURCE_DATE_EPOCH makes it reproducible). */
  readonly generatedAt: string;
  readonly specHash: string;
  /** The spec's revision (a git commit, or the file): printed in every report. */
  readonly revision?: SourceRevision;
}

export function buildReport(
  kinds: readonly AuditKind[],
  input: AuditInput,
  meta: ReportMeta,
): AuditReport {
  const wanted = AUDIT_KINDS.filter((k) => kinds.includes(k));
  const findings: Finding[] = [];
  let summary: AuditSummary = { findings: 0 };
  const sections: Pick<AuditReport, 'licenses' | 'patches' | 'failover'> & {
    licenses?: LicenseAudit;
    patches?: PatchAudit;
    failover?: FailoverAudit;
  } = {};
  if (wanted.includes('licenses')) {
    const audit = licenseAudit(input);
    const found: LicenseFinding[] = audit.pools
      .filter((p) => p.shortfall > 0)
      .map((p) => ({
        kind: 'licenses',
        pool: p.pool,
        metric: p.metric,
        needed: p.needed,
        entitlement: p.entitlement,
        shortfall: p.shortfall,
      }));
    findings.push(...found);
    sections.licenses = audit;
    summary = {
      ...summary,
      licenses: {
        pools: audit.pools.length,
        compliant: audit.pools.length - found.length,
        shortfall: found.length,
        findings: found.length,
      },
    };
  }
  if (wanted.includes('patches')) {
    const audit = patchAudit(input);
    const found: PatchFinding[] = [];
    for (const row of audit.packages) {
      if (row.status === 'compliant') continue;
      found.push({
        kind: 'patches',
        subject: row.subject,
        subjectKind: row.kind,
        baseline: row.baseline,
        package: row.package,
        installed: row.installed,
        required: row.required,
        status: row.status,
        security: row.security,
      });
    }
    findings.push(...found);
    sections.patches = audit;
    const count = (s: string) => audit.subjects.filter((x) => x.status === s).length;
    summary = {
      ...summary,
      patches: {
        subjects: audit.subjects.length,
        compliant: count('compliant'),
        nonCompliant: count('non-compliant'),
        pendingReboot: count('pending-reboot'),
        failed: count('failed'),
        notApplicable: count('not-applicable'),
        findings: found.length,
        securityFindings: found.filter((f) => f.security).length,
        otherFindings: found.filter((f) => !f.security).length,
      },
    };
  }
  if (wanted.includes('failover')) {
    const audit = failoverAudit(input);
    const found: FailoverFinding[] = [];
    for (const i of audit.instances) {
      if (i.status === 'covered') continue;
      found.push({
        kind: 'failover',
        instance: i.instance,
        host: i.host,
        domain: i.domain,
        failoverHost: i.failoverHost,
        status: i.status,
        ...(i.status === 'rpo-exceeded' && i.replica?.rpoSeconds != null
          ? { rpoSeconds: i.replica.rpoSeconds, maxRpoSeconds: i.replica.maxRpoSeconds }
          : {}),
      });
    }
    findings.push(...found);
    sections.failover = audit;
    summary = {
      ...summary,
      failover: {
        tolerate: audit.tolerate,
        protected: audit.protected,
        covered: audit.covered,
        scenarios: audit.scenarios.length,
        scenariosNotCovered: audit.scenarios.filter((s) => s.status !== 'covered').length,
        findings: found.length,
      },
    };
  }
  return {
    formatVersion: AUDIT_FORMAT_VERSION,
    generatedAt: meta.generatedAt,
    ...(meta.revision ? { revision: meta.revision } : {}),
    fleet: input.fleet.name,
    specHash: meta.specHash,
    source: input.source,
    kinds: wanted,
    summary: { ...summary, findings: findings.length },
    findings,
    ...sections,
  };
}

/** 0 when none of the gated kinds has a finding, 2 otherwise (1 is the CLI's, for errors). */
export function exitCodeOf(report: AuditReport, failOn: readonly AuditKind[]): 0 | 2 {
  return report.findings.some((f) => failOn.includes(f.kind)) ? 2 : 0;
}

/** A finding in one line, for text, junit and md. */
export function describeFinding(f: Finding): string {
  switch (f.kind) {
    case 'licenses':
      return `license pool ${f.pool} (${f.metric}) needs ${f.needed} units, ${f.entitlement} owned: short by ${f.shortfall}`;
    case 'patches':
      switch (f.status) {
        case 'missing':
          return `${f.subjectKind} ${f.subject}: ${f.package} is missing; baseline ${f.baseline} requires ${f.required}${f.security ? ' (security)' : ''}`;
        case 'failed':
          return `${f.subjectKind} ${f.subject}: its last patch failed; ${f.package} ${f.installed ?? 'is not installed'}${f.installed === null ? '' : ' is'} below ${f.required} (baseline ${f.baseline})${f.security ? ' (security)' : ''}`;
        case 'pending-reboot':
          return `${f.subjectKind} ${f.subject}: ${f.package} ${f.installed} is installed and waits for a reboot (baseline ${f.baseline})${f.security ? ' (security)' : ''}`;
        default:
          return `${f.subjectKind} ${f.subject}: ${f.package} ${f.installed} is below ${f.required} (baseline ${f.baseline})${f.security ? ' (security)' : ''}`;
      }
    case 'failover': {
      const why: Record<FailoverFinding['status'], string> = {
        'no-failover-host': 'has no failover host',
        'unknown-host': `fails over to ${f.failoverHost}, which is not in the fleet`,
        'same-domain': `fails over to ${f.failoverHost}, in its own failure domain ${f.domain}`,
        'over-capacity': `fails over to ${f.failoverHost}, which lacks the room when ${f.domain} fails`,
        'failover-host-down': `fails over to ${f.failoverHost}, which is down (not ok): it has nowhere to go`,
        'host-down': `its host is down (not ok): it is being failed over, not protected`,
        'replica-missing': `${f.failoverHost} keeps no complete replica of its disk: a restart there would be without its data`,
        'rpo-exceeded': `its replica on ${f.failoverHost} is ${f.rpoSeconds ?? '?'} s old, over its maxRpo of ${f.maxRpoSeconds ?? '?'} s`,
      };
      return `instance ${f.instance} on ${f.host}: ${why[f.status]}`;
    }
  }
}
