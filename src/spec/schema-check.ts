// Layer 2: the document against schemas/fleet.schema.json, with ajv in strict mode (no $data),
// compiled ahead of time (fleet-schema-validator.generated.ts, scripts/gen-schema-validator.ts):
// compiling it as each command started cost more than validating a 100,000-instance spec.
// ajv's errors are turned into messages a person acts on: the key that is unknown (and the one
// they probably meant), the value that is out of range, the key that is missing.
import type { ErrorObject, ValidateFunction } from 'ajv';
import schema from '../../schemas/fleet.schema.json' with { type: 'json' };
import type { DiagnosticCode } from '../model/diagnostic.js';
import type { FleetDocument } from '../model/fleet-spec.generated.js';
import { didYouMean } from './did-you-mean.js';
import { validate as compiledValidate } from './fleet-schema-validator.generated.js';
import { formatPath, quoteValue } from './spec-path.js';
import { FORBIDDEN_KEYS, type PathSegment } from './yaml-document.js';

export { schema as fleetSchema };

export interface SchemaProblem {
  readonly code: DiagnosticCode;
  readonly message: string;
  readonly path: readonly PathSegment[];
  /** Point at the key rather than its value (unknown keys). */
  readonly at: 'key' | 'value';
}

export function checkSchema(value: unknown): {
  document: FleetDocument | undefined;
  problems: SchemaProblem[];
} {
  const validate = compiledValidate as ValidateFunction;
  if (validate(value)) return { document: value as FleetDocument, problems: [] };
  const problems: SchemaProblem[] = [];
  for (const error of validate.errors ?? []) {
    const problem = translate(error, value);
    if (problem) problems.push(problem);
  }
  return { document: undefined, problems };
}

function pointerToPath(pointer: string): PathSegment[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^(0|[1-9][0-9]*)$/.test(s) ? Number(s) : s));
}

function valueAt(root: unknown, path: readonly PathSegment[]): unknown {
  let node = root;
  for (const segment of path) {
    if (node === null || typeof node !== 'object') return undefined;
    node = Object.hasOwn(node, segment) ? (node as Record<string, unknown>)[segment] : undefined;
  }
  return node;
}

/** `spec.hosts[0]` plus ` ("hv-01")` when the object has a name, so a reader knows which one. */
function subject(root: unknown, path: readonly PathSegment[]): string {
  const where = formatPath(path) || 'the document';
  const object = valueAt(root, path);
  const name =
    object !== null && typeof object === 'object' && Object.hasOwn(object, 'name')
      ? (object as { name: unknown }).name
      : undefined;
  return typeof name === 'string' && name.length <= 63 ? `${where} (${name})` : where;
}

function firstSentence(text: unknown): string {
  if (typeof text !== 'string') return '';
  // "letters, digits and . _ + @" holds a '.' that is not a full stop; a sentence ends before a capital.
  const end = text.search(/\.\s+(?=[A-Z])/);
  return (end === -1 ? text : text.slice(0, end)).replace(/\.$/, '');
}

function describeType(value: unknown): string {
  if (value === null) return 'empty';
  if (ArrayBuffer.isView(value)) return 'binary data';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  // 1e400 is Infinity to YAML and JavaScript alike: say so rather than "not a number".
  if (typeof value === 'number' && !Number.isFinite(value)) {
    return Number.isNaN(value)
      ? '.nan (not a number)'
      : `${value > 0 ? '' : '-'}.inf (beyond every limit)`;
  }
  return `a ${typeof value}`;
}

const TYPE_NAMES: Record<string, string> = {
  string: 'a string',
  integer: 'a whole number',
  number: 'a number',
  boolean: 'true or false',
  object: 'a mapping',
  array: 'a list',
  null: 'empty',
};

function translate(error: ErrorObject, root: unknown): SchemaProblem | undefined {
  const path = pointerToPath(error.instancePath);
  const where = formatPath(path);
  const params = error.params as Record<string, unknown>;
  const data = error.data;
  switch (error.keyword) {
    case 'additionalProperties': {
      const key = String(params.additionalProperty);
      if (FORBIDDEN_KEYS.has(key)) return undefined; // already reported by the YAML layer
      const known = Object.keys((error.parentSchema?.properties as object | undefined) ?? {});
      return {
        code: 'unknown-key',
        message: `unknown key ${quoteValue(key)} in ${subject(root, path)}${didYouMean(key, known)}`,
        path: [...path, key],
        at: 'key',
      };
    }
    case 'required': {
      const key = String(params.missingProperty);
      return {
        code: 'missing-key',
        message: `${subject(root, path)} is missing the required key ${quoteValue(key)}`,
        path,
        at: 'key',
      };
    }
    case 'type': {
      const expected = String(params.type);
      let hint = '';
      if (expected === 'string' && (typeof data === 'number' || typeof data === 'boolean')) {
        hint = ` (write it in quotes: "${String(data)}")`;
      }
      return {
        code: 'wrong-type',
        message: `${where} must be ${TYPE_NAMES[expected] ?? expected}, not ${expected === 'integer' && Number.isFinite(data) ? String(data) : describeType(data)}${hint}`,
        path,
        at: data === null ? 'key' : 'value',
      };
    }
    case 'enum': {
      const allowed = (params.allowedValues as unknown[]).map(String);
      return {
        code: 'unknown-value',
        message: `${where} ${quoteValue(data)} is not one of: ${allowed.join(', ')}${didYouMean(String(data), allowed)}`,
        path,
        at: 'value',
      };
    }
    case 'const': {
      const allowed = String(params.allowedValue);
      return {
        code: 'unknown-value',
        message: `${where} must be ${quoteValue(allowed)}, not ${quoteValue(data)}`,
        path,
        at: 'value',
      };
    }
    case 'pattern': {
      const description = firstSentence(error.parentSchema?.description);
      if (error.propertyName !== undefined) {
        return {
          code: 'invalid-format',
          message: `${quoteValue(error.propertyName)} in ${where} is not a valid key${description ? `; expected ${lowerFirst(description)}` : ''}`,
          path: [...path, error.propertyName],
          at: 'key',
        };
      }
      return {
        code: 'invalid-format',
        message: `${where} ${quoteValue(data)} is not valid${description ? `; expected ${lowerFirst(description)}` : ''}`,
        path,
        at: 'value',
      };
    }
    case 'propertyNames':
      return undefined; // the failing name's own error says more
    case 'maxLength':
      if (error.propertyName !== undefined) return undefined; // reported with its pattern
      return {
        code: 'out-of-range',
        message: `${where} is longer than ${String(params.limit)} characters`,
        path,
        at: 'value',
      };
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum': {
      const words: Record<string, string> = {
        minimum: 'at least',
        maximum: 'at most',
        exclusiveMinimum: 'more than',
        exclusiveMaximum: 'less than',
      };
      return {
        code: 'out-of-range',
        message: `${where} must be ${words[error.keyword]} ${String(params.limit)}, not ${String(data)}`,
        path,
        at: 'value',
      };
    }
    case 'minItems':
    case 'maxItems':
    case 'minProperties':
    case 'maxProperties': {
      const limit = Number(params.limit);
      const noun = error.keyword.endsWith('Items') ? 'item' : 'key';
      const bound = error.keyword.startsWith('min') ? 'at least' : 'at most';
      return {
        code: 'out-of-range',
        message: `${where} must have ${bound} ${limit} ${noun}${limit === 1 ? '' : 's'}`,
        path,
        at: 'value',
      };
    }
    case 'uniqueItems':
      return {
        code: 'out-of-range',
        message: `${where} lists ${quoteValue(valueAt(root, [...path, Number(params.i)]))} twice`,
        path: [...path, Number(params.i)],
        at: 'value',
      };
    default:
      return {
        code: 'schema',
        message: `${where || 'the document'} ${error.message ?? 'is invalid'}`,
        path,
        at: 'value',
      };
  }
}

function lowerFirst(text: string): string {
  return /^[A-Z][a-z ]/.test(text) ? text.charAt(0).toLowerCase() + text.slice(1) : text;
}
