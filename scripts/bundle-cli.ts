// Bundles the command line (dist/src/cli/main.js, as tsc left it) into dist/cli/ with esbuild:
// vfleet's own modules and its small dependencies in a few files (each command still its own
// chunk, loaded when named), so a `vfleet` process does not resolve, read and link some three
// hundred modules each time it starts — about 170 ms of CPU per process on this machine, paid by
// every command and every test that runs one. The libraries with files of their own to read or
// native parts stay in node_modules, loaded as before: BullMQ (its Lua scripts), ioredis (shared
// with BullMQ), ssh2 and cpu-features (native).
//
// bin/vfleet.js runs the bundle when it is newer than dist/src/cli/main.js (tsc rewrites every
// file, so a `tsc` after the bundle means the bundle is stale: the launcher then runs the modules
// tsc wrote). `npm run build` does both.
import { rmSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('../..', import.meta.url));
const entry = `${root}dist/src/cli/main.js`;
const outdir = `${root}dist/cli`;

export const EXTERNAL = ['bullmq', 'ioredis', 'ssh2', 'cpu-features'];

rmSync(outdir, { recursive: true, force: true }); // chunks are named by their content
await build({
  entryPoints: [entry],
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  outdir,
  external: EXTERNAL,
  // CommonJS dependencies inside an ES module bundle call require(): give them Node's.
  banner: {
    js: "import { createRequire as __vfleetRequire } from 'node:module'; const require = __vfleetRequire(import.meta.url);",
  },
  sourcemap: 'linked',
  logLevel: 'warning',
});
if (statSync(`${outdir}/main.js`).mtimeMs < statSync(entry).mtimeMs) {
  throw new Error('the bundle is older than what it bundles');
}
