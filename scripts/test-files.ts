// The test files `npm test` runs, one per line, the longest first.
//
// Node 20's runner, given a folder, runs every .js file under a folder named `test` — the helper
// modules too (28 of them, a process each that loads a module and finds no test) — and takes the
// files in the folder's order, four at a time. Given a list, it takes the list's order: the files
// that run for minutes (QEMU guests under TCG, sshd hosts, the controller's simulation) start
// first, so the short ones fill the gaps beside them instead of a long one starting last and
// running alone at the end. The weights are wall seconds of a loaded two-core run (docs/testing.md,
// "How long it takes"); a file not named here is short enough to go anywhere, and goes after them.
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const LONG: Readonly<Record<string, number>> = {
  'controller/simulation.test.js': 292,
  'cli/controller-ssh-cli.test.js': 270,
  'cli/drain-ssh-cli.test.js': 198,
  'cli/apply-cli.test.js': 195,
  'cli/destroy-cli.test.js': 190,
  'cli/http-cli.test.js': 177,
  'lab/lab-script.test.js': 147,
  'engines/vm-replication.test.js': 147,
  'cli/ssh-apply-cli.test.js': 140,
  'engines/real-engine.test.js': 119,
  'engines/live-migration.test.js': 112,
  'engines/ssh-engine.test.js': 110,
  'cli/apply-changes-cli.test.js': 109,
  'engines/apt-patch.test.js': 103,
  'engines/real-drivers.test.js': 81,
  'cli/local-host-cli.test.js': 79,
  // Boots a Debian guest under TCG (2-4 min); early, so that it is not the run's tail (in CI it
  // first waits for its image, built in the background while the suite starts).
  'engines/vm-patch.test.js': 150,
  // 50 s at load 6, 110-140 s at load 11-18 (docs/many-machines.md)
  'cli/many-machines-cli.test.js': 110,
};

const root = fileURLToPath(new URL('../test/', import.meta.url));

function testFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return testFiles(path);
    return entry.name.endsWith('.test.js') ? [path] : [];
  });
}

const weight = (file: string): number => LONG[relative(root, file)] ?? 0;
const files = testFiles(root).sort((a, b) => weight(b) - weight(a) || a.localeCompare(b));
process.stdout.write(`${files.map((f) => relative(process.cwd(), f)).join('\n')}\n`);
