// Generates docs/spec-reference.md, the fleet spec reference a user reads, from
// schemas/fleet.schema.json. The schema is the single source of truth (habit 6, docs/architecture.md): the reference
// never says more than the schema does, so fix a description there, not here.
//
// The walk is depth-first in the schema's property order, so sections come in the order a reader
// meets them in a fleet.yaml. An object definition (or an inline object such as host.cpu) gets a
// section of its own; a string definition with a pattern (name, labelKey, ...) is a value format,
// listed once at the end; enums, lists and maps are spelled out where they are used.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const schemaPath = fileURLToPath(
  new URL('../../schemas/fleet.schema.json', import.meta.url),
);
export const specReferencePath = fileURLToPath(
  new URL('../../docs/spec-reference.md', import.meta.url),
);

/** The subset of draft-07 that fleet.schema.json uses. */
interface Schema {
  title?: string;
  description?: string;
  $ref?: string;
  type?: string;
  const?: unknown;
  enum?: unknown[];
  default?: unknown;
  properties?: Record<string, Schema>;
  required?: string[];
  additionalProperties?: boolean | Schema;
  propertyNames?: Schema;
  items?: Schema;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  minItems?: number;
  maxItems?: number;
  uniqueItems?: boolean;
  minProperties?: number;
  maxProperties?: number;
  definitions?: Record<string, Schema>;
  /** Alternatives (a value that is one of several shapes). */
  anyOf?: Schema[];
}

/** An object type: one heading and one table. */
interface Section {
  name: string;
  schema: Schema;
  /** Where it appears in a fleet document, e.g. `spec.hosts[].cpu`; empty for the document. */
  paths: string[];
}

/** A reusable string definition with a pattern, listed under "Value formats". */
interface ValueFormat {
  name: string;
  schema: Schema;
  usedBy: string[];
}

// Patterns longer than this do not fit a table cell; they go in a list under the table.
const INLINE_PATTERN_MAX = 48;

export function generateSpecDocs(schemaText: string = readFileSync(schemaPath, 'utf8')): string {
  const root = JSON.parse(schemaText) as Schema;
  const definitions = root.definitions ?? {};
  const rootName = root.title ?? 'FleetDocument';

  const resolve = (ref: string): { name: string; schema: Schema } => {
    const name = ref.replace(/^#\/definitions\//, '');
    const schema = definitions[name];
    if (!ref.startsWith('#/definitions/') || schema === undefined) {
      throw new Error(`unresolvable $ref ${ref}`);
    }
    return { name, schema };
  };
  const isObjectType = (s: Schema): boolean => s.properties !== undefined;
  const isValueFormat = (s: Schema): boolean =>
    s.type === 'string' && s.pattern !== undefined && s.enum === undefined;

  // Collect sections and value formats in document order.
  const sections = new Map<string, Section>();
  const formats = new Map<string, ValueFormat>();
  for (const [name, schema] of Object.entries(definitions)) {
    if (isValueFormat(schema)) formats.set(name, { name, schema, usedBy: [] });
  }
  const useFormat = (name: string, path: string): void => {
    const format = formats.get(name);
    if (format && !format.usedBy.includes(path)) format.usedBy.push(path);
  };
  const visitSection = (name: string, schema: Schema, path: string): void => {
    const known = sections.get(name);
    if (known) {
      known.paths.push(path);
      return;
    }
    sections.set(name, { name, schema, paths: path === '' ? [] : [path] });
    for (const [field, fieldSchema] of Object.entries(schema.properties ?? {})) {
      visitValue(fieldSchema, `${name}.${field}`, path === '' ? field : `${path}.${field}`);
    }
  };
  const visitValue = (schema: Schema, inlineName: string, path: string): void => {
    if (schema.$ref !== undefined) {
      const target = resolve(schema.$ref);
      if (isObjectType(target.schema)) visitSection(target.name, target.schema, path);
      else if (formats.has(target.name)) useFormat(target.name, path);
      else visitValue(target.schema, inlineName, path);
    } else if (isObjectType(schema)) {
      visitSection(inlineName, schema, path);
    } else if (schema.anyOf !== undefined) {
      for (const alternative of schema.anyOf) visitValue(alternative, inlineName, path);
    } else if (schema.items !== undefined) {
      visitValue(schema.items, inlineName, `${path}[]`);
    } else if (typeof schema.additionalProperties === 'object') {
      if (schema.propertyNames) visitValue(schema.propertyNames, inlineName, `${path} (keys)`);
      visitValue(schema.additionalProperties, inlineName, `${path} (values)`);
    }
  };
  visitSection(rootName, root, '');

  // Headings get GitHub's anchors: lower case, punctuation dropped, spaces to '-', and a counter
  // on repeats. Computing them up front keeps every link right even if two names collide.
  const anchors = new Map<string, string>();
  const seenSlugs = new Map<string, number>();
  const addHeading = (key: string, text: string): void => {
    const base = text
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const count = seenSlugs.get(base) ?? 0;
    seenSlugs.set(base, count + 1);
    anchors.set(key, count === 0 ? base : `${base}-${count}`);
  };
  for (const name of sections.keys()) addHeading(`section:${name}`, name);
  addHeading('formats', 'Value formats');
  for (const name of formats.keys()) addHeading(`format:${name}`, name);
  const link = (key: string, text: string): string => `[${text}](#${anchors.get(key)})`;

  /** The type column and the constraints that belong to the type, for one schema. */
  const describeType = (schema: Schema, inlineName: string): { type: string; limits: string[] } => {
    if (schema.$ref !== undefined) {
      const target = resolve(schema.$ref);
      if (sections.has(target.name)) {
        return { type: link(`section:${target.name}`, target.name), limits: [] };
      }
      if (formats.has(target.name)) {
        return { type: link(`format:${target.name}`, target.name), limits: [] };
      }
      return describeType(target.schema, inlineName);
    }
    if (schema.const !== undefined) return { type: code(String(schema.const)), limits: [] };
    if (schema.enum !== undefined) {
      return { type: schema.enum.map((v) => code(String(v))).join(' | '), limits: [] };
    }
    if (isObjectType(schema)) {
      return { type: link(`section:${inlineName}`, inlineName), limits: [] };
    }
    if (schema.anyOf?.every((a) => a.$ref !== undefined)) {
      // Alternatives by name only: an inline one would need a name of its own.
      const types = schema.anyOf.map((a) => describeType(a, inlineName).type);
      return { type: types.join(' or '), limits: [] };
    }
    if (schema.items !== undefined) {
      const item = describeType(schema.items, inlineName);
      const limits = [count(schema.minItems, schema.maxItems, 'item', 'items')];
      if (schema.uniqueItems) limits.push('unique');
      return { type: `list of ${item.type}`, limits: [...limits, ...item.limits].filter(nonEmpty) };
    }
    if (typeof schema.additionalProperties === 'object') {
      const key = schema.propertyNames
        ? describeType(schema.propertyNames, inlineName).type
        : 'string';
      const value = describeType(schema.additionalProperties, inlineName).type;
      const limits = [count(schema.minProperties, schema.maxProperties, 'entry', 'entries')];
      return { type: `map of ${key} → ${value}`, limits: limits.filter(nonEmpty) };
    }
    const limits: string[] = [];
    if (schema.type === 'integer' || schema.type === 'number') limits.push(numberRange(schema));
    if (schema.type === 'string') {
      limits.push(count(schema.minLength, schema.maxLength, 'character', 'characters'));
    }
    return { type: schema.type ?? 'any', limits: limits.filter(nonEmpty) };
  };

  const describe = (schema: Schema): string => {
    if (schema.description !== undefined) return schema.description;
    if (schema.$ref !== undefined) return describe(resolve(schema.$ref).schema);
    return '';
  };

  const closed = [...sections.values()].every((s) => s.schema.additionalProperties === false);
  const out: string[] = [];
  out.push('# Fleet spec reference', '');
  out.push(
    'Generated from `schemas/fleet.schema.json` by `npm run gen` (`scripts/gen-spec-docs.ts`). Do not edit by hand: change the schema and run `npm run gen`.',
    '',
  );
  out.push(
    `A fleet spec is a YAML file (usually \`fleet.yaml\`) that holds one ${link(`section:${rootName}`, rootName)}. ` +
      'Each section below is one kind of object, with the path where it appears in the file. ' +
      (closed ? 'An object accepts only the fields its table lists. ' : '') +
      'A field with *yes* under required must be present; a field with a default may be left out. ' +
      'A type that links to one of the ' +
      link('formats', 'Value formats') +
      ' is a string of that format: a name, a label, a path or a package version.',
    '',
  );
  for (const section of sections.values()) {
    out.push(`- ${link(`section:${section.name}`, section.name)}${pathsSuffix(section.paths)}`);
  }
  out.push(`- ${link('formats', 'Value formats')}`, '');

  for (const section of sections.values()) {
    const { schema } = section;
    out.push(`## ${section.name}`, '');
    if (schema.description !== undefined) out.push(text(schema.description), '');
    const notes = [
      section.paths.length > 0
        ? `Path: ${section.paths.map(code).join(', ')}.`
        : 'Path: the document itself.',
    ];
    if (schema.minProperties !== undefined && schema.minProperties > 0) {
      notes.push(
        schema.minProperties === 1
          ? 'At least one of the fields below must be set.'
          : `At least ${schema.minProperties} of the fields below must be set.`,
      );
    }
    if (schema.maxProperties !== undefined) {
      notes.push(`At most ${schema.maxProperties} of the fields below may be set.`);
    }
    if (schema.additionalProperties !== false) notes.push('Fields not listed here are allowed.');
    out.push(notes.join(' '), '');

    const required = new Set(schema.required ?? []);
    const longPatterns: string[] = [];
    out.push('| field | type | required | default | constraints | description |');
    out.push('|---|---|---|---|---|---|');
    for (const [field, fieldSchema] of Object.entries(schema.properties ?? {})) {
      const { type, limits } = describeType(fieldSchema, `${section.name}.${field}`);
      if (fieldSchema.pattern !== undefined && fieldSchema.$ref === undefined) {
        if (fieldSchema.pattern.length <= INLINE_PATTERN_MAX) {
          limits.push(`pattern ${code(fieldSchema.pattern)}`);
        } else {
          limits.push('pattern below');
          longPatterns.push(`- \`${field}\`: ${code(fieldSchema.pattern)}`);
        }
      }
      const cells = [
        code(field),
        type,
        required.has(field) ? 'yes' : '',
        defaultValue(fieldSchema.default),
        limits.join(', '),
        text(describe(fieldSchema)),
      ];
      out.push(`| ${cells.map(cell).join(' | ')} |`);
    }
    out.push('');
    if (longPatterns.length > 0) out.push('Patterns:', '', ...longPatterns, '');
  }

  out.push('## Value formats', '');
  out.push(
    'Strings with a fixed format, and the fields that use each. A value must match the whole pattern.',
    '',
  );
  for (const format of formats.values()) {
    const { schema } = format;
    out.push(`### ${format.name}`, '');
    out.push(text(schema.description ?? ''), '');
    out.push(`- Pattern: ${code(schema.pattern ?? '')}`);
    const length = count(schema.minLength, schema.maxLength, 'character', 'characters');
    if (length !== '') out.push(`- Length: ${length}`);
    out.push(
      format.usedBy.length > 0
        ? `- Used by: ${format.usedBy.map(usedByPath).join(', ')}`
        : '- Not used by any field.',
    );
    out.push('');
  }
  return `${out.join('\n').replace(/\n+$/, '')}\n`;
}

const nonEmpty = (s: string): boolean => s !== '';

/** A default as it is written in YAML: a string without quotes, anything else as JSON. */
function defaultValue(value: unknown): string {
  if (value === undefined) return '';
  return code(typeof value === 'string' ? value : JSON.stringify(value));
}

/** A code span that survives any backticks in the text. */
function code(s: string): string {
  const longestRun = Math.max(0, ...(s.match(/`+/g) ?? []).map((run) => run.length));
  const fence = '`'.repeat(longestRun + 1);
  const pad = s.startsWith('`') || s.endsWith('`') ? ' ' : '';
  return `${fence}${pad}${s}${pad}${fence}`;
}

/** Schema prose as Markdown text: characters that Markdown would take as markup are escaped. */
function text(s: string): string {
  return s.replace(/[\\`[\]<&*_~]/g, (c, at: number) => {
    const before = s[at - 1] ?? ' ';
    const after = s[at + 1] ?? ' ';
    if (c === '<') return '&lt;';
    if (c === '&') return /^&#?[A-Za-z0-9]+;/.test(s.slice(at)) ? '&amp;' : c;
    if (c === '*' || c === '_' || c === '~') {
      // Emphasis needs a delimiter that touches a word: a lone "_" between spaces stays as it is,
      // and so does the "_" inside SSH_AUTH_SOCK, which GitHub never reads as emphasis.
      if (/\s/.test(before) && /\s/.test(after)) return c;
      if (c === '_' && /[\p{L}\p{N}]/u.test(before) && /[\p{L}\p{N}]/u.test(after)) return c;
    }
    return `\\${c}`;
  });
}

/** A table cell: a '|' would end the cell, even inside a code span, so it is escaped. */
function cell(s: string): string {
  return s.replace(/\|/g, '\\|');
}

function pathsSuffix(paths: string[]): string {
  return paths.length > 0 ? ` (${paths.map(code).join(', ')})` : '';
}

function usedByPath(path: string): string {
  const match = /^(.*) \((keys|values)\)$/.exec(path);
  return match ? `${code(match[1] ?? '')} (${match[2]})` : code(path);
}

/** 12345678 → 12,345,678: digit grouping that does not depend on the machine's locale. */
function grouped(n: number): string {
  return Math.abs(n) >= 10000 ? String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ',') : String(n);
}

function count(
  min: number | undefined,
  max: number | undefined,
  one: string,
  many: string,
): string {
  const unit = (n: number): string => (n === 1 ? one : many);
  if (min !== undefined && max !== undefined) {
    return min === max
      ? `exactly ${grouped(min)} ${unit(min)}`
      : `${grouped(min)}–${grouped(max)} ${many}`;
  }
  if (min !== undefined) return min === 0 ? '' : `at least ${grouped(min)} ${unit(min)}`;
  if (max !== undefined) return `at most ${grouped(max)} ${unit(max)}`;
  return '';
}

function numberRange(s: Schema): string {
  const { minimum, maximum, exclusiveMinimum, exclusiveMaximum } = s;
  if (minimum !== undefined && maximum !== undefined) {
    return `${grouped(minimum)}–${grouped(maximum)}`;
  }
  const bounds = [
    exclusiveMinimum !== undefined ? `> ${grouped(exclusiveMinimum)}` : '',
    minimum !== undefined ? `≥ ${grouped(minimum)}` : '',
    exclusiveMaximum !== undefined ? `< ${grouped(exclusiveMaximum)}` : '',
    maximum !== undefined ? `≤ ${grouped(maximum)}` : '',
  ];
  return bounds.filter(nonEmpty).join(', ');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeFileSync(specReferencePath, generateSpecDocs());
  console.log(`wrote ${specReferencePath}`);
}
