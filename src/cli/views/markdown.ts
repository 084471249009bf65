// GitHub-flavoured Markdown, the pieces every Markdown view shares (the plan's and the audit's):
// a table cell that cannot break its table or turn into markup, a table, a folded section. One
// place, so a pull request comment and a step summary escape names the same way.

/**
 * A value as a table cell: `|` would end the cell and a newline the row; `\`, `*`, `_`, `~`,
 * `` ` ``, `[`, `]`, `<`, `>` and `&` would start emphasis, strikethrough (`~` is in Debian
 * versions), code, links, HTML or an entity. Each is backslash-escaped (CommonMark escapes any
 * ASCII punctuation), newlines become spaces; an empty value is an en dash so no cell is blank.
 */
export function cell(v: string | number | null | undefined): string {
  if (v === null || v === undefined || v === '') return '–';
  return String(v)
    .replace(/\\/g, '\\\\')
    .replace(/\|/g, '\\|')
    .replace(/[<>`*_~[\]&]/g, (c) => `\\${c}`)
    .replace(/\r?\n|\r/g, ' ');
}

/** A table with a header row; every value passed through cell(). */
export function mdTable(
  head: readonly string[],
  rows: ReadonlyArray<ReadonlyArray<string | number | null>>,
): string {
  return [
    `| ${head.join(' | ')} |`,
    `| ${head.map(() => '---').join(' | ')} |`,
    ...rows.map((r) => `| ${r.map(cell).join(' | ')} |`),
  ].join('\n');
}

/** Text inside raw HTML, where Markdown's backslash escapes are not read: entities instead. */
export function htmlText(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/**
 * A section folded behind its summary line (`<details>`). The blank lines around the body are
 * what makes GitHub render Markdown inside the HTML block; the summary line is raw HTML, so it
 * is escaped as HTML text, not as Markdown.
 */
export function folded(summary: string, body: string): string {
  return `<details><summary>${htmlText(summary)}</summary>\n\n${body}\n\n</details>`;
}
