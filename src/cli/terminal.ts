// Where command output goes. Commands and views never call console.log; they write here, so
// tests can capture output and a JSON view is never interleaved with stray text.
export interface Terminal {
  out(text: string): void;
  err(text: string): void;
  readonly isTTY: boolean;
}

export const processTerminal: Terminal = {
  out: (text) => void process.stdout.write(text.endsWith('\n') ? text : `${text}\n`),
  err: (text) => void process.stderr.write(text.endsWith('\n') ? text : `${text}\n`),
  isTTY: Boolean(process.stdout.isTTY),
};
