// A finding about a fleet spec, located in its file. Codes are stable: tools and tests match on
// them, so rename none; add new ones.

export type Severity = 'error' | 'warning';

export const DIAGNOSTIC_CODES = [
  // reading and YAML
  'read-error',
  'too-large',
  'encoding',
  'control-character',
  'empty',
  'yaml-syntax',
  'duplicate-key',
  'alias-limit',
  'forbidden-key',
  'nesting-too-deep',
  'unsupported-tag',
  'non-string-key',
  // schema
  'unknown-key',
  'missing-key',
  'wrong-type',
  'unknown-value',
  'invalid-format',
  'out-of-range',
  'schema',
  // semantics
  'duplicate-name',
  'unknown-reference',
  'replica-name-too-long',
  'unrunnable-image',
  'unknown-domain',
  'unknown-spread-label',
  'ssh-endpoint',
  'unsatisfiable-labels',
  'license-metric-mismatch',
  'baseline-mismatch',
  'unsupported-tolerance',
  'replication-policy',
  'patch-window',
  'rollout-policy',
  // files the spec names
  'outside-repository',
] as const;

export type DiagnosticCode = (typeof DIAGNOSTIC_CODES)[number];

export interface Diagnostic {
  readonly severity: Severity;
  readonly code: DiagnosticCode;
  readonly message: string;
  readonly file: string;
  /** 1-based. */
  readonly line: number;
  /** 1-based, in characters (UTF-16 code units, as editors count them). */
  readonly column: number;
  /** Where in the document, as `spec.hosts[0].cpu`; empty for the whole document. */
  readonly path: string;
}

export function countBySeverity(diagnostics: readonly Diagnostic[]): {
  errors: number;
  warnings: number;
} {
  let errors = 0;
  for (const d of diagnostics) if (d.severity === 'error') errors++;
  return { errors, warnings: diagnostics.length - errors };
}
