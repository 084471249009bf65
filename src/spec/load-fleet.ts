// The whole of `validate`: bytes → text → YAML → schema → semantics → Fleet, every problem
// collected on the way (habit 7, docs/architecture.md). Pure: the caller reads the file and passes its bytes.
import type { Diagnostic, DiagnosticCode, Severity } from '../model/diagnostic.js';
import type { Fleet } from '../model/fleet.js';
import type { FleetDocument } from '../model/fleet-spec.generated.js';
import { fastParse } from './fast-path.js';
import { normalizeFleet } from './normalize.js';
import { checkSchema } from './schema-check.js';
import { checkSemantics } from './semantic-checks.js';
import { decodeSource } from './source-text.js';
import { formatPath } from './spec-path.js';
import { locate, type ParsedYaml, type PathSegment, parseYaml } from './yaml-document.js';

export interface LoadedFleet {
  /** Present when there is no error (warnings allowed). */
  readonly fleet: Fleet | undefined;
  /** The validated document, for tools that want the spec as written. */
  readonly document: FleetDocument | undefined;
  /** Sorted by line and column. */
  readonly diagnostics: readonly Diagnostic[];
}

export interface LoadOptions {
  /** Try the fast path first (default true); tests turn it off to compare the two. */
  readonly fast?: boolean;
}

export function loadFleet(
  bytes: Uint8Array | string,
  file: string,
  options: LoadOptions = {},
): LoadedFleet {
  const diagnostics: Diagnostic[] = [];
  const at = (
    severity: Severity,
    code: DiagnosticCode,
    message: string,
    line: number,
    column: number,
    path: string,
  ) => diagnostics.push({ severity, code, message, file, line, column, path });

  let text: string;
  if (typeof bytes === 'string') {
    text = bytes;
  } else {
    const decoded = decodeSource(bytes);
    if (!decoded.ok) {
      const { line, column } = lineAndColumn(bytes, decoded.offset);
      at('error', decoded.code, decoded.message, line, column, '');
      return { fleet: undefined, document: undefined, diagnostics };
    }
    text = decoded.text;
  }

  if (text.trim() === '' || isOnlyComments(text)) {
    at(
      'error',
      'empty',
      'the file is empty; a fleet spec starts with "apiVersion: vfleet/v1"',
      1,
      1,
      '',
    );
    return { fleet: undefined, document: undefined, diagnostics };
  }

  if (options.fast !== false) {
    const fast = fastLoad(text);
    if (fast) return fast;
  }

  const parsed = parseYaml(text);
  const position = (offset: number) => {
    const { line, col } = parsed.lineCounter.linePos(offset);
    return { line, column: col };
  };
  const report = (
    severity: Severity,
    code: DiagnosticCode,
    message: string,
    path: readonly PathSegment[],
    where: number | 'key' | 'value',
  ) => {
    const offset = typeof where === 'number' ? where : locate(parsed, path, where);
    const { line, column } = position(offset);
    at(severity, code, message, line, column, formatPath(path));
  };

  for (const problem of parsed.problems) {
    report('error', problem.code, problem.message, problem.path, problem.offset);
  }
  let document: FleetDocument | undefined;
  if (!parsed.problems.some((p) => p.fatal)) {
    document = validateValue(parsed, report);
  }
  const hasErrors = diagnostics.some((d) => d.severity === 'error');
  const fleet = document && !hasErrors ? normalizeFleet(document) : undefined;
  return {
    fleet,
    document: hasErrors ? undefined : document,
    diagnostics: sortDiagnostics(diagnostics),
  };
}

/** A valid spec without positions (fast-path.ts); undefined when anything needs reporting. */
function fastLoad(text: string): LoadedFleet | undefined {
  const value = fastParse(text);
  if (value === undefined || value === null || typeof value !== 'object' || Array.isArray(value))
    return undefined;
  const schema = checkSchema(value);
  if (!schema.document || checkSemantics(schema.document).length > 0) return undefined;
  return { fleet: normalizeFleet(schema.document), document: schema.document, diagnostics: [] };
}

function validateValue(
  parsed: ParsedYaml,
  report: (
    severity: Severity,
    code: DiagnosticCode,
    message: string,
    path: readonly PathSegment[],
    where: 'key' | 'value',
  ) => void,
): FleetDocument | undefined {
  const value = parsed.value;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    report(
      'error',
      'wrong-type',
      'a fleet spec is a mapping that starts with "apiVersion: vfleet/v1"',
      [],
      'value',
    );
    return undefined;
  }
  const schema = checkSchema(value);
  for (const problem of schema.problems) {
    report('error', problem.code, problem.message, problem.path, problem.at);
  }
  // Semantics run even after schema errors, on the items the schema accepted, so one run
  // reports all three layers.
  const input = schema.document ?? semanticInput(value as Record<string, unknown>, schema.problems);
  if (input) {
    const { document, broken } =
      'broken' in input ? input : { document: input, broken: new Set<string>() };
    for (const problem of checkSemantics(document, broken)) {
      report(problem.severity, problem.code, problem.message, problem.path, problem.at);
    }
  }
  return schema.document;
}

const SECTIONS = ['hosts', 'images', 'licenses', 'patchBaselines', 'instances'] as const;

/**
 * The part of an invalid document that semantic checks can still read: `spec` with its sections
 * as arrays (a section that is not one counts as empty), and the items the schema rejected
 * named in `broken`. Undefined when there is no usable `spec` at all.
 */
function semanticInput(
  value: Record<string, unknown>,
  problems: readonly { path: readonly PathSegment[] }[],
): { document: FleetDocument; broken: Set<string> } | undefined {
  const spec = value.spec;
  if (spec === null || typeof spec !== 'object' || Array.isArray(spec)) return undefined;
  const broken = new Set<string>();
  for (const { path } of problems) {
    if (path[0] !== 'spec') continue;
    if (path[1] === 'failover' || path[1] === 'patching') broken.add(path[1]);
    else if (typeof path[1] === 'string' && typeof path[2] === 'number')
      broken.add(`${path[1]}/${path[2]}`);
  }
  const sections: Record<string, unknown[]> = {};
  for (const section of SECTIONS) {
    const items = (spec as Record<string, unknown>)[section];
    sections[section] = Array.isArray(items) ? items : [];
    sections[section].forEach((item, i) => {
      if (item === null || typeof item !== 'object' || Array.isArray(item))
        broken.add(`${section}/${i}`);
    });
  }
  const failover = (spec as Record<string, unknown>).failover;
  if (failover !== undefined && (failover === null || typeof failover !== 'object'))
    broken.add('failover');
  const patching = (spec as Record<string, unknown>).patching;
  if (patching !== undefined && (patching === null || typeof patching !== 'object'))
    broken.add('patching');
  const document = { ...value, spec: { ...spec, ...sections } } as unknown as FleetDocument;
  return { document, broken };
}

function sortDiagnostics(diagnostics: Diagnostic[]): Diagnostic[] {
  const seen = new Set<string>();
  return diagnostics
    .filter((d) => {
      const key = `${d.line}:${d.column}:${d.code}:${d.message}`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    })
    .sort((a, b) => a.line - b.line || a.column - b.column || a.message.localeCompare(b.message));
}

function isOnlyComments(text: string): boolean {
  return text
    .split('\n')
    .every((line) => /^\s*(#.*)?$/.test(line) || /^\s*(---|\.\.\.)\s*$/.test(line));
}

/** 1-based line and column of a UTF-16 offset into the decoded text of `bytes`. */
function lineAndColumn(bytes: Uint8Array, offset: number): { line: number; column: number } {
  const text = new TextDecoder('utf-8').decode(bytes);
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: offset - lineStart + 1 };
}

/**
 * Where a path of the document is written (its value), for a caller that checks a valid spec
 * further (read-spec.ts: files it names) and must point at the field. Parses again: only a
 * problem needs it, and the fast path kept no positions.
 */
export function positionOf(
  bytes: Uint8Array,
  path: readonly PathSegment[],
): { line: number; column: number } {
  const decoded = decodeSource(bytes);
  if (!decoded.ok) return { line: 1, column: 1 };
  const parsed = parseYaml(decoded.text);
  const { line, col } = parsed.lineCounter.linePos(locate(parsed, path, 'value'));
  return { line, column: col };
}
