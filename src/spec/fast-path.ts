// The fast path for the common case, a valid spec: parse with js-yaml (about ten times faster
// than the `yaml` document API, but without node positions), and when the schema and semantic
// checks then find nothing at all, there is nothing to point at and the positions are never
// needed. Anything else — a problem, or any YAML feature that the careful path has its own
// diagnostic for (aliases, anchors, tags, directives, merge keys, complex keys, duplicate keys,
// prototype keys) — goes through the careful path, which reports it with file:line:col.
import { CORE_SCHEMA, load } from 'js-yaml';
import { FORBIDDEN_KEYS, MAX_DEPTH } from './yaml-document.js';

/**
 * Characters that start a YAML feature the careful path examines. Conservative on purpose: an
 * `&` in a description only costs the careful path, never a wrong answer.
 */
const CAREFUL = /[&*!%]|<<|^\s*\?(\s|$)|^---\s*\S|^\.\.\./m;

/** The document as plain data, or undefined when the careful path must decide. */
export function fastParse(text: string): unknown {
  if (CAREFUL.test(text)) return undefined;
  let value: unknown;
  try {
    value = load(text, { schema: CORE_SCHEMA, maxDepth: MAX_DEPTH, maxAliases: 0 });
  } catch {
    return undefined;
  }
  return plainData(value, 0) ? value : undefined;
}

/** Plain objects, arrays, strings, finite numbers, booleans and null only; no prototype keys. */
function plainData(value: unknown, depth: number): boolean {
  if (depth > MAX_DEPTH) return false;
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return true;
  if (typeof value === 'number') return Number.isFinite(value);
  if (Array.isArray(value)) return value.every((v) => plainData(v, depth + 1));
  if (typeof value !== 'object' || Object.getPrototypeOf(value) !== Object.prototype) return false;
  for (const key of Object.keys(value)) {
    if (FORBIDDEN_KEYS.has(key)) return false;
    if (!plainData((value as Record<string, unknown>)[key], depth + 1)) return false;
  }
  return true;
}
