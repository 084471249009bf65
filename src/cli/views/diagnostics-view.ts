// How `validate` shows its diagnostics: text for people, json for tools, github for Actions
// annotations. Views only format; the command decides where the text goes.
import type { Diagnostic } from '../../model/diagnostic.js';
import { countBySeverity } from '../../model/diagnostic.js';
import type { Fleet } from '../../model/fleet.js';
import { FORMAT_VERSION } from './json.js';

export const DIAGNOSTIC_FORMATS = ['text', 'json', 'github'] as const;
export type DiagnosticFormat = (typeof DIAGNOSTIC_FORMATS)[number];

export interface ValidateResult {
  readonly file: string;
  readonly diagnostics: readonly Diagnostic[];
  readonly fleet: Fleet | undefined;
}

export function renderValidate(format: DiagnosticFormat, result: ValidateResult): string {
  switch (format) {
    case 'text':
      return renderText(result);
    case 'json':
      return renderJson(result);
    case 'github':
      return renderGithub(result);
  }
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function renderText({ file, diagnostics, fleet }: ValidateResult): string {
  const lines = diagnostics.map(
    (d) => `${d.file}:${d.line}:${d.column}: ${d.severity}: ${d.message} [${d.code}]`,
  );
  const { errors, warnings } = countBySeverity(diagnostics);
  if (errors > 0) {
    lines.push(`${file}: invalid: ${plural(errors, 'error')}, ${plural(warnings, 'warning')}`);
  } else if (fleet) {
    const instances = fleet.groups.reduce((n, g) => n + g.replicas, 0);
    lines.push(
      `${file}: valid: ${plural(fleet.hosts.length, 'host')}, ${plural(fleet.images.length, 'image')}, ${plural(fleet.groups.length, 'instance group')} (${plural(instances, 'instance')}), ${plural(fleet.licenses.length, 'license pool')}, ${plural(fleet.patchBaselines.length, 'patch baseline')}${warnings ? `; ${plural(warnings, 'warning')}` : ''}`,
    );
  }
  return `${lines.join('\n')}\n`;
}

function renderJson({ diagnostics }: ValidateResult): string {
  const { errors, warnings } = countBySeverity(diagnostics);
  return `${JSON.stringify(
    {
      formatVersion: FORMAT_VERSION,
      valid: errors === 0,
      errorCount: errors,
      warningCount: warnings,
      diagnostics: diagnostics.map((d) => ({
        severity: d.severity,
        code: d.code,
        message: d.message,
        file: d.file,
        line: d.line,
        column: d.column,
        path: d.path,
      })),
    },
    null,
    2,
  )}\n`;
}

// GitHub workflow commands: data escapes %, CR, LF; properties also escape ':' and ','.
function escapeData(text: string): string {
  return text.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}
function escapeProperty(text: string): string {
  return escapeData(text).replace(/:/g, '%3A').replace(/,/g, '%2C');
}

function renderGithub({ diagnostics }: ValidateResult): string {
  return diagnostics
    .map(
      (d) =>
        `::${d.severity === 'error' ? 'error' : 'warning'} file=${escapeProperty(d.file)},line=${d.line},col=${d.column},title=${escapeProperty(`vfleet ${d.code}`)}::${escapeData(d.message)}\n`,
    )
    .join('');
}
