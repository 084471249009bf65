#!/usr/bin/env node
// Launcher: the CLI is compiled to dist/ by `npm ci` (the prepare script): tsc writes
// dist/src/, and scripts/bundle-cli.ts bundles the CLI into dist/cli/. The bundle runs when it is
// newer than what tsc wrote (a `tsc` alone after it leaves it stale: the modules run instead).
import { statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** How long a finished command's open handles may keep the process up. */
const EXIT_GRACE_MS = 5_000;

const modules = new URL('../dist/src/cli/main.js', import.meta.url);
const bundle = new URL('../dist/cli/main.js', import.meta.url);
const mtime = (url) => {
  try {
    return statSync(url).mtimeMs;
  } catch {
    return undefined;
  }
};
const bundled = mtime(bundle);
const entry = bundled !== undefined && bundled >= (mtime(modules) ?? 0) ? bundle : modules;
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
// The command is over: what it left open must not keep the process up. A daemon stopped by
// SIGTERM (`vfleet controller`) stayed up 38 s and more, until a host's sshd went away, on a
// connection nothing of it used any more. The process is given a few seconds to flush its output
// and let its handles close, then exits; the timer is unref'd, so it never delays an exit.
setTimeout(() => process.exit(), EXIT_GRACE_MS).unref();
