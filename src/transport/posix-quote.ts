// An SSH exec request carries ONE string, which the remote user's login shell parses. So every
// argument vfleet sends, argv[0] included, is POSIX single-quoted: inside '…' a shell
// interprets nothing ($, `, \, globs, ~, newlines are all literal); the only character that
// cannot appear is ' itself, written as '\'' (close, escaped quote, reopen). NUL cannot be
// carried by any shell or exec(2), and a string that is not well-formed UTF-16 would reach the
// host as U+FFFD instead of its own bytes: both are refused rather than silently changed.
import { VfleetError } from '../model/errors.js';

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** One argument as a POSIX shell word that the shell reads back byte for byte. */
export function posixQuote(argument: string): string {
  if (argument.includes('\0')) {
    throw new VfleetError('invalid-argument', 'a command argument contains a NUL character');
  }
  if (LONE_SURROGATE.test(argument)) {
    throw new VfleetError(
      'invalid-argument',
      'a command argument is not well-formed Unicode (a lone surrogate)',
    );
  }
  return `'${argument.replace(/'/g, `'\\''`)}'`;
}

/** An argument vector as one shell command line: every element quoted, none left bare. */
export function posixCommandLine(argv: readonly string[]): string {
  return argv.map(posixQuote).join(' ');
}
