// A package inventory file, as `dpkg-query -W -f='${binary:Package}\t${Version}\n'` writes it:
// one `name<TAB>version` per line. Pure: the caller reads the file. Every bad line is reported
// with its position, like the spec itself.
import type { Diagnostic } from '../model/diagnostic.js';

/**
 * A file that is not an inventory (a wrong path, a secret) must not be echoed: each problem
 * quotes at most EXCERPT characters, escaped, and only the first MAX_PROBLEMS lines are reported.
 */
const EXCERPT = 20;
const MAX_PROBLEMS = 10;

/** At most `max` characters of a value, as a JSON string (quotes, escapes, an ellipsis if cut). */
function excerpt(value: string, max: number): string {
  return JSON.stringify(value.length > max ? `${value.slice(0, max)}…` : value);
}

const NAME = /^[a-z0-9][a-z0-9+.-]{1,99}(?::[a-z0-9][a-z0-9-]{0,23})?$/;
const VERSION = /^(?:[0-9]{1,9}:)?[0-9][A-Za-z0-9.+~-]{0,118}$/;

export function parseInventory(
  text: string,
  file: string,
): { packages: Record<string, string>; diagnostics: Diagnostic[] } {
  const packages: Record<string, string> = {};
  const diagnostics: Diagnostic[] = [];
  let problems = 0;
  const problem = (line: number, column: number, message: string) => {
    if (++problems > MAX_PROBLEMS) return;
    diagnostics.push({
      severity: 'error',
      code: 'invalid-format',
      message,
      file,
      line,
      column,
      path: '',
    });
  };
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    if (line.trim() === '') return;
    const tab = line.indexOf('\t');
    if (tab === -1) {
      problem(i + 1, 1, 'expected "name<TAB>version" (dpkg-query -W output)');
      return;
    }
    const name = line.slice(0, tab);
    const version = line.slice(tab + 1);
    if (!NAME.test(name))
      problem(i + 1, 1, `${excerpt(name, EXCERPT)} is not a Debian package name`);
    else if (!VERSION.test(version)) {
      problem(i + 1, tab + 2, `${excerpt(version, EXCERPT)} is not a Debian version`);
    } else if (Object.hasOwn(packages, name)) {
      problem(i + 1, 1, `package ${name} is listed twice`);
    } else {
      packages[name] = version;
    }
  });
  if (problems > MAX_PROBLEMS) {
    const last = diagnostics[diagnostics.length - 1] as Diagnostic;
    diagnostics.push({
      ...last,
      column: 1,
      message: `and ${problems - MAX_PROBLEMS} more problems in this file; is it a package inventory (dpkg-query -W output)?`,
    });
  }
  return { packages, diagnostics };
}
