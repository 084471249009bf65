// The fleet's name read off a spec without parsing it, for starting the state read before the
// spec is parsed (state-read-start.ts, session.ts). A module of its own, with nothing of the
// spec's parsing: the read starts before any of that is loaded.
import { MAX_SPEC_BYTES } from '../spec/source-text.js';
import { readBoundedFileSync } from '../transport/bounded-file.js';

/**
 * The fleet's name as the spec's `metadata:` block writes it in the usual block style (`name:`
 * at the block's first indentation), found without parsing the spec; undefined when it is not
 * written so or the file cannot be read. A guess, for starting the state read early:
 * whoever uses it checks it against the parsed spec's name.
 */
export function fleetNameHint(file: string): string | undefined {
  const read = readBoundedFileSync(file, MAX_SPEC_BYTES);
  if (!read.ok) return undefined;
  const lines = read.bytes.toString('utf8').split(/\r?\n/);
  const start = lines.findIndex((line) => /^metadata:[ \t]*(#.*)?$/.test(line));
  let indent: string | undefined;
  for (const line of start < 0 ? [] : lines.slice(start + 1)) {
    if (/^[ \t]*(#.*)?$/.test(line)) continue;
    const own = /^[ \t]*/.exec(line)?.[0] ?? '';
    if (own === '') return undefined; // the block ended
    indent ??= own;
    if (own !== indent) continue;
    const name = /^[ \t]+name:[ \t]*(["']?)([a-z0-9-]+)\1[ \t]*(#.*)?$/.exec(line);
    if (name) return name[2];
  }
  return undefined;
}
