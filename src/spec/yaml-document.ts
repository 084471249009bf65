// Parses spec text into a YAML document that remembers where every node came from, and refuses
// what a fleet spec never needs and an attacker would use: alias bombs, prototype keys, deep
// nesting, custom tags. Every problem is returned as data with its offset; nothing throws.
import { createRequire } from 'node:module';
import type {
  Alias,
  Document,
  LineCounter,
  Node,
  Pair,
  Scalar,
  YAMLError,
  YAMLMap,
  YAMLSeq,
} from 'yaml';
import type { DiagnosticCode } from '../model/diagnostic.js';

// The `yaml` library (seventy modules) is loaded when a spec is first parsed here: a valid spec
// takes the fast path (fast-path.ts) and never is, and loading it was a tenth of `validate`.
let loaded: typeof import('yaml') | undefined;
const yaml = (): typeof import('yaml') => {
  loaded ??= createRequire(import.meta.url)('yaml') as typeof import('yaml');
  return loaded;
};
const isAlias = (node: unknown): node is Alias => yaml().isAlias(node);
const isMap = (node: unknown): node is YAMLMap => yaml().isMap(node);
const isPair = (node: unknown): node is Pair => yaml().isPair(node);
const isScalar = (node: unknown): node is Scalar => yaml().isScalar(node);
const isSeq = (node: unknown): node is YAMLSeq => yaml().isSeq(node);

/** A spec needs about 8 levels; 64 leaves room for anything a person writes and stops stack games. */
export const MAX_DEPTH = 64;
/** Aliases are legitimate YAML (shared label maps), but a handful is all a spec needs. */
export const MAX_ALIASES = 100;
/**
 * What all aliases together may add to the document, in nodes. A billion-laughs document adds
 * 9^9 from a few hundred bytes; a spec that shares a label map a hundred times adds a few hundred.
 */
export const MAX_ALIAS_EXPANSION = 10_000;

/** Keys that would reach an object's prototype machinery: refused wherever they appear. */
export const FORBIDDEN_KEYS: ReadonlySet<string> = new Set([
  '__proto__',
  'constructor',
  'prototype',
]);
const YAML_TAG_PREFIX = 'tag:yaml.org,2002:';
const CORE_TAGS = new Set(
  ['str', 'int', 'float', 'bool', 'null', 'map', 'seq'].map((t) => `${YAML_TAG_PREFIX}${t}`),
);

interface AliasBudget {
  aliases: number;
  /** Nodes the aliases seen so far add when expanded. */
  expansion: number;
  /** Expanded size of each anchored node, filled in document order (anchors precede aliases). */
  sizes: Map<unknown, number>;
  overBudget: boolean;
}

export type PathSegment = string | number;

export interface YamlProblem {
  readonly code: DiagnosticCode;
  readonly message: string;
  readonly offset: number;
  readonly path: readonly PathSegment[];
  /** A fatal problem stops schema and semantic checks: the tree they would read is not the file. */
  readonly fatal: boolean;
}

export interface ParsedYaml {
  readonly lineCounter: LineCounter;
  readonly document: Document.Parsed | undefined;
  /** The document as plain data, when it could be built. */
  readonly value: unknown;
  readonly problems: readonly YamlProblem[];
}

export function parseYaml(text: string): ParsedYaml {
  const lineCounter = new (yaml().LineCounter)();
  const problems: YamlProblem[] = [];

  // The yaml parser recurses per flow level; refuse absurd bracket nesting before it spends
  // its stack (and a second) finding out.
  const deep = firstFlowDepthOver(text, MAX_DEPTH);
  if (deep !== -1) {
    // The line counter is filled by the parser; count lines by hand for this one offset.
    for (let i = text.indexOf('\n'); i !== -1 && i < deep; i = text.indexOf('\n', i + 1)) {
      lineCounter.addNewLine(i + 1);
    }
    problems.push({
      code: 'nesting-too-deep',
      message: `nesting is deeper than ${MAX_DEPTH} levels`,
      offset: deep,
      path: [],
      fatal: true,
    });
    return { lineCounter, document: undefined, value: undefined, problems };
  }

  const document = yaml().parseDocument(text, {
    lineCounter,
    // yaml checks each key against every earlier key of its map (quadratic: 40,000 keys took
    // 20 s); inspect() finds duplicates with a set per map instead.
    uniqueKeys: false,
    strict: true,
    prettyErrors: false,
    version: '1.2',
  });

  let exhausted = false;
  for (const error of document.errors) {
    if (error.code === 'RESOURCE_EXHAUSTION') {
      if (!exhausted) {
        problems.push({
          code: 'nesting-too-deep',
          message: `nesting is deeper than ${MAX_DEPTH} levels`,
          offset: error.pos[0],
          path: [],
          fatal: true,
        });
      }
      exhausted = true;
      continue;
    }
    problems.push(fromYamlError(error, text));
  }
  for (const warning of document.warnings) {
    if (warning.code === 'TAG_RESOLVE_FAILED') {
      problems.push({
        code: 'unsupported-tag',
        message: `unsupported tag ${JSON.stringify(text.slice(warning.pos[0], warning.pos[1]))}; a fleet spec uses plain YAML values`,
        offset: warning.pos[0],
        path: [],
        fatal: false,
      });
    }
  }

  if (!exhausted && document.contents) {
    inspect(document, document.contents, [], 1, problems, {
      aliases: 0,
      expansion: 0,
      sizes: new Map(),
      overBudget: false,
    });
  }

  let value: unknown;
  if (!problems.some((p) => p.fatal)) {
    try {
      // inspect() bounded what aliases expand to, so yaml's own (coarser) limit is not needed.
      value = document.toJS({ maxAliasCount: -1 });
    } catch (e) {
      // Reached only by alias expansion the node walk did not foresee; report it, do not crash.
      problems.push({
        code: 'alias-limit',
        message: `the document expands beyond what its aliases may (${(e as Error).message})`,
        offset: 0,
        path: [],
        fatal: true,
      });
    }
  }
  return { lineCounter, document, value, problems };
}

function fromYamlError(error: YAMLError, text: string): YamlProblem {
  const offset = error.pos[0];
  switch (error.code) {
    case 'DUPLICATE_KEY':
      return {
        code: 'duplicate-key',
        message: `duplicate key ${JSON.stringify(keyTextAt(text, offset))}`,
        offset,
        path: [],
        fatal: false,
      };
    case 'MULTIPLE_DOCS':
      return {
        code: 'yaml-syntax',
        message: 'a fleet spec is a single YAML document; remove the second "---" document',
        offset,
        path: [],
        fatal: true,
      };
    default: {
      // yaml's messages end with " at line L, column C:" and a source excerpt; we give our own.
      const first = (error.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '');
      return { code: 'yaml-syntax', message: first, offset, path: [], fatal: true };
    }
  }
}

/** The key written at `offset`: a quoted scalar, or plain text up to its ':'. */
function keyTextAt(text: string, offset: number): string {
  const rest = text.slice(offset, offset + 300);
  const quoted = /^("(?:[^"\\\n]|\\.)*"|'(?:[^'\n]|'')*')/.exec(rest);
  if (quoted) {
    const raw = quoted[1] as string;
    return raw.startsWith('"') ? String(JSON.parse(raw)) : raw.slice(1, -1).replace(/''/g, "'");
  }
  const plain = /^([^\n:#]*?)\s*(?::|$)/m.exec(rest);
  return plain?.[1] ?? rest.slice(0, 1);
}

function inspect(
  document: Document.Parsed,
  node: unknown,
  path: PathSegment[],
  depth: number,
  problems: YamlProblem[],
  seen: AliasBudget,
): number {
  if (depth > MAX_DEPTH) {
    problems.push({
      code: 'nesting-too-deep',
      message: `nesting is deeper than ${MAX_DEPTH} levels`,
      offset: offsetOf(node),
      path: [...path],
      fatal: true,
    });
    return 1;
  }
  if (isAlias(node)) {
    seen.aliases++;
    const size = seen.sizes.get(node.resolve(document)) ?? 1;
    seen.expansion += size;
    if (seen.aliases === MAX_ALIASES + 1) {
      problems.push({
        code: 'alias-limit',
        message: `more than ${MAX_ALIASES} aliases; a fleet spec needs only a few`,
        offset: offsetOf(node),
        path: [...path],
        fatal: true,
      });
    } else if (seen.expansion > MAX_ALIAS_EXPANSION && !seen.overBudget) {
      seen.overBudget = true;
      problems.push({
        code: 'alias-limit',
        message: `aliases expand the document by more than ${MAX_ALIAS_EXPANSION} nodes (an alias bomb?); a fleet spec needs only a few small aliases`,
        offset: offsetOf(node),
        path: [...path],
        fatal: true,
      });
    }
    return size;
  }
  // Tags yaml could not resolve (`!custom`) come as its warnings; here, the ones it resolves
  // but a spec has no use for (`!!binary`, `!!set`, `!!timestamp`).
  const tag = (node as Node | null)?.tag;
  if (tag?.startsWith(YAML_TAG_PREFIX) && !CORE_TAGS.has(tag)) {
    problems.push({
      code: 'unsupported-tag',
      message: `unsupported tag "!!${tag.slice(YAML_TAG_PREFIX.length)}"; a fleet spec uses plain YAML values`,
      offset: offsetOf(node),
      path: [...path],
      fatal: false,
    });
  }
  let size = 1;
  if (isMap(node)) {
    const keys = new Set<unknown>();
    for (const pair of node.items) {
      const key = pair.key;
      if (!isScalar(key) || key.value === null || typeof key.value === 'object') {
        problems.push({
          code: 'non-string-key',
          message: 'a mapping key must be a plain string',
          offset: offsetOf(key ?? pair.value ?? node),
          path: [...path],
          // yaml turns such a key into text like "[ a, b ]"; checking that text would only
          // report the same key again, so the layers after this one do not run.
          fatal: true,
        });
        continue;
      }
      const name = String(key.value);
      // The same equality yaml's own check used: scalars with the same value.
      if (keys.has(key.value)) {
        problems.push({
          code: 'duplicate-key',
          message: `duplicate key ${JSON.stringify(name)}`,
          offset: offsetOf(key),
          path: [...path],
          fatal: false,
        });
      }
      keys.add(key.value);
      if (FORBIDDEN_KEYS.has(name)) {
        problems.push({
          code: 'forbidden-key',
          message: `the key ${JSON.stringify(name)} is not allowed`,
          offset: offsetOf(key),
          path: [...path, name],
          fatal: false,
        });
      }
      path.push(name);
      size += 1 + inspect(document, pair.value, path, depth + 1, problems, seen);
      path.pop();
    }
  } else if (isSeq(node)) {
    node.items.forEach((item, i) => {
      path.push(i);
      size += inspect(document, item, path, depth + 1, problems, seen);
      path.pop();
    });
  }
  if ((node as Node | null)?.anchor) seen.sizes.set(node, size);
  return size;
}

function offsetOf(node: unknown): number {
  const range = (node as Node | null)?.range;
  return range ? range[0] : 0;
}

/**
 * The offset at which flow collections ([ ], { }) first nest deeper than `limit`, or -1.
 * Quoted scalars and comments are skipped; brackets inside block scalars may overcount, which
 * can only err towards refusing a file with over `limit` unbalanced brackets in a block scalar.
 */
export function firstFlowDepthOver(text: string, limit: number): number {
  let depth = 0;
  let i = 0;
  const n = text.length;
  let prev = '\n';
  while (i < n) {
    const c = text[i] as string;
    if (c === '#' && (prev === ' ' || prev === '\t' || prev === '\n')) {
      const eol = text.indexOf('\n', i);
      i = eol === -1 ? n : eol;
      prev = ' ';
      continue;
    }
    if ((c === '"' || c === "'") && /[\s[{,:]/.test(prev)) {
      i = endOfQuoted(text, i, c);
      prev = c;
      continue;
    }
    if (c === '[' || c === '{') {
      depth++;
      if (depth > limit) return i;
    } else if ((c === ']' || c === '}') && depth > 0) {
      depth--;
    }
    prev = c;
    i++;
  }
  return -1;
}

function endOfQuoted(text: string, start: number, quote: string): number {
  let i = start + 1;
  while (i < text.length) {
    const c = text[i];
    if (quote === '"' && c === '\\') {
      i += 2;
      continue;
    }
    if (c === quote) {
      if (quote === "'" && text[i + 1] === "'") {
        i += 2;
        continue;
      }
      return i + 1;
    }
    i++;
  }
  return i;
}

/** The node at `path` (or the deepest existing node on the way), for positioning a diagnostic. */
const pairIndex = new WeakMap<YAMLMap, Map<string, Pair>>();

/**
 * A map's pairs by key, built once per map: every diagnostic locates its path, and a search of
 * the map for each would cost keys × diagnostics (40,000 bad label keys: 1.6 billion steps).
 */
function pairsByKey(map: YAMLMap): Map<string, Pair> {
  let index = pairIndex.get(map);
  if (!index) {
    index = new Map();
    for (const p of map.items) {
      if (!isPair(p) || !isScalar(p.key)) continue;
      const key = String(p.key.value);
      if (!index.has(key)) index.set(key, p);
    }
    pairIndex.set(map, index);
  }
  return index;
}

export function locate(
  parsed: ParsedYaml,
  path: readonly PathSegment[],
  at: 'key' | 'value' = 'value',
): number {
  const document = parsed.document;
  if (!document) return 0;
  let node: unknown = document.contents;
  let keyNode: unknown;
  for (const segment of path) {
    if (isAlias(node)) node = node.resolve(document);
    if (isMap(node)) {
      const pair = pairsByKey(node).get(String(segment));
      if (!pair) break;
      keyNode = pair.key;
      node = pair.value ?? pair.key;
    } else if (isSeq(node)) {
      const item = node.items[Number(segment)];
      if (item === undefined) break;
      keyNode = undefined;
      node = item;
    } else {
      break;
    }
  }
  if (at === 'key' && keyNode) return offsetOf(keyNode);
  if (isScalar(node) && node.value === null && node.source === '' && keyNode) {
    return offsetOf(keyNode);
  }
  return offsetOf(node);
}
