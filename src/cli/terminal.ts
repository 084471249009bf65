// Where command output goes. Commands and views never call console.log; they write here, so
// tests can capture output and a JSON view is never interleaved with stray text. The process
// terminal redacts (src/state/redact.ts): no secret leaves through it, whoever wrote the text.
import { redact } from '../state/redact.js';

export interface Terminal {
  out(text: string): void;
  err(text: string): void;
  readonly isTTY: boolean;
}

const line = (text: string) => redact(text.endsWith('\n') ? text : `${text}\n`);

export const processTerminal: Terminal = {
  out: (text) => void process.stdout.write(line(text)),
  err: (text) => void process.stderr.write(line(text)),
  isTTY: Boolean(process.stdout.isTTY),
};
