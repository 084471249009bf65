import { Command, Option } from 'commander';
import { readAndLoadFleet } from '../../app/read-spec.js';
import { countBySeverity } from '../../model/diagnostic.js';
import type { Terminal } from '../terminal.js';
import {
  DIAGNOSTIC_FORMATS,
  type DiagnosticFormat,
  renderValidate,
} from '../views/diagnostics-view.js';

export interface ValidateArgs {
  readonly file: string;
  readonly format: DiagnosticFormat;
}

/** Exit 0 when the spec is valid (warnings allowed), 1 when it is not. */
export function runValidate(args: ValidateArgs, terminal: Terminal): number {
  const loaded = readAndLoadFleet(args.file);
  terminal.out(
    renderValidate(args.format, {
      file: args.file,
      diagnostics: loaded.diagnostics,
      fleet: loaded.fleet,
    }),
  );
  return countBySeverity(loaded.diagnostics).errors === 0 ? 0 : 1;
}

export function validateCommand(terminal: Terminal, setExit: (code: number) => void): Command {
  return new Command('validate')
    .description('check a fleet spec: YAML, schema and semantics, every problem at once')
    .argument('[file]', 'the fleet spec (same as -f)')
    .option('-f, --file <path>', 'the fleet spec', 'fleet.yaml')
    .addOption(
      new Option('--format <format>', 'output format').choices(DIAGNOSTIC_FORMATS).default('text'),
    )
    .action((file: string | undefined, options: { file: string; format: DiagnosticFormat }) => {
      setExit(runValidate({ file: file ?? options.file, format: options.format }, terminal));
    });
}
