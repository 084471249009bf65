// Borderless, left-aligned columns in the style of `terraform state list` / `nomad node status`,
// drawn by cli-table3.
import { createRequire } from 'node:module';
import type CliTable from 'cli-table3';

// Loaded when a table is drawn (status): every other command starts without it.
let Table: typeof CliTable | undefined;

const NO_BORDERS = {
  top: '',
  'top-mid': '',
  'top-left': '',
  'top-right': '',
  bottom: '',
  'bottom-mid': '',
  'bottom-left': '',
  'bottom-right': '',
  left: '',
  'left-mid': '',
  mid: '',
  'mid-mid': '',
  right: '',
  'right-mid': '',
  middle: '  ',
};

export function table(
  head: readonly string[],
  rows: ReadonlyArray<ReadonlyArray<string | number>>,
): string {
  Table ??= createRequire(import.meta.url)('cli-table3') as typeof CliTable;
  const t = new Table({
    head: [...head],
    chars: NO_BORDERS,
    style: { head: [], border: [], 'padding-left': 0, 'padding-right': 0 },
  });
  for (const row of rows) t.push(row.map(String));
  return t
    .toString()
    .split('\n')
    .map((line) => line.trimEnd())
    .join('\n');
}
