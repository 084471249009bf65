// A package inventory file, as `dpkg-query -W -f='${binary:Package}\t${Version}\n'` writes it:
// one `name<TAB>version` per line. Pure: the caller reads the file. Every bad line is reported
// with its position, like the spec itself.
import type { Diagnostic } from '../model/diagnostic.js';

const NAME = /^[a-z0-9][a-z0-9+.-]{1,99}(?::[a-z0-9][a-z0-9-]{0,23})?$/;
const VERSION = /^(?:[0-9]{1,9}:)?[0-9][A-Za-z0-9.+~-]{0,118}$/;

export function parseInventory(
  text: string,
  file: string,
): { packages: Record<string, string>; diagnostics: Diagnostic[] } {
  const packages: Record<string, string> = {};
  const diagnostics: Diagnostic[] = [];
  const problem = (line: number, column: number, message: string) =>
    diagnostics.push({
      severity: 'error',
      code: 'invalid-format',
      message,
      file,
      line,
      column,
      path: '',
    });
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
      problem(i + 1, 1, `${JSON.stringify(name.slice(0, 60))} is not a Debian package name`);
    else if (!VERSION.test(version)) {
      problem(i + 1, tab + 2, `${JSON.stringify(version.slice(0, 60))} is not a Debian version`);
    } else if (Object.hasOwn(packages, name)) {
      problem(i + 1, 1, `package ${name} is listed twice`);
    } else {
      packages[name] = version;
    }
  });
  return { packages, diagnostics };
}
