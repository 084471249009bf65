// Where command output goes. Commands and views never call console.log; they write here, so
// tests can capture output and a JSON view is never interleaved with stray text.
//
// Everything written here passes through escapeInvisibles() (main() wraps every Terminal in
// safeTerminal()), the one place that makes user values safe to show: a name, a path, a "did you
// mean" or an inventory excerpt cannot move the cursor, reorder the line with a bidirectional
// override, or hide text behind zero-width characters.
export interface Terminal {
  out(text: string): void;
  err(text: string): void;
  readonly isTTY: boolean;
}

/**
 * What is never shown raw: C0 and C1 controls but tab and newline (ESC starts terminal escape
 * sequences, CR overwrites a line), format characters (bidirectional embeddings, overrides and
 * isolates U+202A–202E and U+2066–2069, marks U+200E/200F/061C, zero-width U+200B–200D, U+2060,
 * U+FEFF, soft hyphen, tag characters), line and paragraph separators, lone surrogates, private
 * use, and the blank fillers that render as nothing (U+115F, U+1160, U+3164, U+FFA0).
 */
const INVISIBLE =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: finding them is the point
  /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\p{Cf}\p{Cs}\p{Co}\p{Zl}\p{Zp}\u115f\u1160\u3164\uffa0]/gu;

/**
 * Each invisible character as `\uXXXX` (two for one outside the BMP): visible on a terminal and
 * still a valid JSON escape, so a JSON view stays JSON that decodes to the same value.
 */
export function escapeInvisibles(text: string): string {
  return text.replace(INVISIBLE, (c) => {
    let out = '';
    for (let i = 0; i < c.length; i++) out += `\\u${c.charCodeAt(i).toString(16).padStart(4, '0')}`;
    return out;
  });
}

/** The same terminal, with everything written to it passed through escapeInvisibles(). */
export function safeTerminal(terminal: Terminal): Terminal {
  return {
    out: (text) => terminal.out(escapeInvisibles(text)),
    err: (text) => terminal.err(escapeInvisibles(text)),
    get isTTY() {
      return terminal.isTTY;
    },
  };
}

export const processTerminal: Terminal = {
  out: (text) => void process.stdout.write(text.endsWith('\n') ? text : `${text}\n`),
  err: (text) => void process.stderr.write(text.endsWith('\n') ? text : `${text}\n`),
  isTTY: Boolean(process.stdout.isTTY),
};
