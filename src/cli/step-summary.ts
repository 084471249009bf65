// `--step-summary` (plan, audit): the Markdown view appended to the file GitHub Actions names in
// $GITHUB_STEP_SUMMARY, beside the command's normal output. Shared by the two commands, so both
// refuse the same way and append the same way (no command imports another).
import { appendFileSync } from 'node:fs';
import { VfleetError } from '../model/errors.js';

/**
 * The file to append to. Asked before the command does its work: a plan that refreshed every
 * host and then could not write its summary would have wasted that work, and a CI step without
 * the variable is misconfigured, not a reason to skip the summary silently.
 */
export function stepSummaryFile(env: NodeJS.ProcessEnv): string {
  const file = env.GITHUB_STEP_SUMMARY;
  if (file === undefined || file.trim() === '') {
    throw new VfleetError(
      'usage',
      '--step-summary: GITHUB_STEP_SUMMARY is not set (GitHub Actions sets it to the step summary file; elsewhere, set it to the file to append the Markdown to)',
    );
  }
  return file;
}

/** Appends `markdown` to the summary file, a blank line after it so step summaries stay apart. */
export function appendStepSummary(file: string, markdown: string): void {
  try {
    appendFileSync(file, `${markdown.trimEnd()}\n\n`);
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    throw new VfleetError(
      'step-summary-unwritable',
      `--step-summary: cannot append to ${file} (GITHUB_STEP_SUMMARY): ${why}`,
    );
  }
}
