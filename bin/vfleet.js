#!/usr/bin/env node
// Launcher: the CLI is compiled to dist/ by `npm ci` (the prepare script).
import { fileURLToPath } from 'node:url';

const entry = new URL('../dist/src/cli/main.js', import.meta.url);
let cli;
try {
  cli = await import(entry.href);
} catch (e) {
  if (e && e.code === 'ERR_MODULE_NOT_FOUND' && String(e.message).includes(fileURLToPath(entry))) {
    process.stderr.write(
      'vfleet: not built yet; run `npm ci` (or `npm run build`) in the vfleet folder\n',
    );
    process.exit(1);
  }
  throw e;
}
// A reader that stops early (`vfleet status | head`) is not an error.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e) => {
    if (e && e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
}
process.exitCode = await cli.main(process.argv.slice(2));
