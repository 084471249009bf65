// A shared secret the controller is given — the notifications' signing key (`--notify-secret-file`,
// VFLEET_NOTIFY_SECRET) and the push webhook's (`--webhook-secret-file`, VFLEET_WEBHOOK_SECRET):
// a file's first line, or an environment variable. The file is read again whenever the secret is
// needed, so it can be rotated without a restart; it is read bounded (a secret is a line, and a
// FIFO named by mistake must not hang the controller), and every value read is remembered for
// redaction (state/redact.ts) before anything can print it. Errors name the option and the
// file, never the content.
import { VfleetError } from '../model/errors.js';
import { rememberSecret } from '../state/redact.js';
import { readBoundedFileSync } from '../transport/bounded-file.js';

const MAX_SECRET_FILE_BYTES = 4096;

export interface SecretOption {
  /** The option naming a file (`--notify-secret-file`). */
  readonly option: string;
  readonly file?: string;
  /** The environment variable used when no file is named. */
  readonly variable: string;
  readonly env: NodeJS.ProcessEnv;
}

/** The secret's reader: a file's first line (refusing an empty one), else the variable's value. */
export function secretOption(o: SecretOption): () => string | undefined {
  const { file } = o;
  if (file) {
    return () => {
      const read = readBoundedFileSync(file, MAX_SECRET_FILE_BYTES);
      if (!read.ok) throw new VfleetError('usage', `${o.option} ${file} ${read.reason}`);
      const line = read.bytes.toString('utf8').split('\n')[0]?.trim();
      if (!line) throw new VfleetError('usage', `${o.option} ${file} is empty`);
      rememberSecret(line);
      return line;
    };
  }
  const value = o.env[o.variable] || undefined;
  rememberSecret(value);
  return () => value;
}
