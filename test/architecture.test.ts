// docs/architecture.md's layout: the pure modules never reach for I/O or an adapter, and every
// folder of src/ imports only the folders its row of the import table names. This reads the
// TypeScript sources, so it fails the moment such an import is written.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fromRoot } from './helpers/paths.js';

const PURE = ['spec', 'model', 'scheduler', 'licensing', 'patching', 'plan', 'audit'];
const ADAPTERS = ['state', 'queue', 'engines', 'transport', 'controller', 'http', 'cli'];
const FORBIDDEN_PACKAGES = [
  'ioredis',
  'bullmq',
  'ssh2',
  'fs',
  'fs/promises',
  'child_process',
  'net',
  'dgram',
  'http',
  'https',
  'worker_threads',
];

function tsFiles(dir: string): string[] {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return [];
  }
  return entries.flatMap((name) => {
    const path = `${dir}/${name}`;
    if (statSync(path).isDirectory()) return tsFiles(path);
    return name.endsWith('.ts') ? [path] : [];
  });
}

/** Every module specifier a file imports or re-exports, statically or dynamically. */
export function importsOf(source: string): string[] {
  const specifiers: string[] = [];
  const patterns = [
    /\bfrom\s+['"]([^'"]+)['"]/g,
    /\bimport\s+['"]([^'"]+)['"]/g,
    /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
    /\brequire\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  for (const pattern of patterns) {
    for (const match of source.matchAll(pattern)) specifiers.push(match[1] as string);
  }
  return specifiers;
}

export function violation(file: string, specifier: string): string | undefined {
  const bare = specifier.replace(/^node:/, '');
  if (FORBIDDEN_PACKAGES.includes(bare)) return `${file} imports ${specifier}`;
  if (specifier.startsWith('.')) {
    const layer = new URL(specifier, `file://${file}`).pathname.split('/src/')[1]?.split('/')[0];
    if (layer && ADAPTERS.includes(layer))
      return `${file} imports the adapter ${layer}/ (${specifier})`;
  }
  return undefined;
}

/**
 * Who may import whom (docs/architecture.md, "Who may import whom"): a folder always may import
 * itself. Kept in the same order as the table there.
 */
/** What the operations, the controller and the CLI stand on: every folder but those three. */
const BELOW_APP = [
  'model',
  'spec',
  'scheduler',
  'licensing',
  'patching',
  'plan',
  'audit',
  'state',
  'queue',
  'engines',
  'transport',
];

export const MAY_IMPORT: Readonly<Record<string, readonly string[]>> = {
  model: [],
  spec: ['model', 'patching'],
  licensing: ['model'],
  patching: ['model'],
  scheduler: ['model', 'licensing', 'patching'],
  plan: ['model', 'scheduler', 'licensing', 'patching'],
  audit: ['model', 'scheduler', 'licensing', 'patching', 'plan'],
  transport: ['model'],
  // patching/: the dpkg inventory parser the sandbox driver reads a rootfs with, and what a patch
  // checks names and versions with and reads apt-get -s with (debian-syntax.ts, apt-simulation.ts);
  // state/: only keys.ts (below), where the embedded engine's keys are made, lua-script.ts,
  // how its scripts run, and redis-client.ts, the client they run on (a server or a Cluster).
  engines: ['model', 'transport', 'patching', 'state'],
  state: ['model'],
  queue: ['model', 'state', 'engines', 'patching', 'plan'],
  app: BELOW_APP,
  controller: [...BELOW_APP, 'app'],
  // The HTTP server of the controller and the worker: a front end like cli/, which starts it
  // (and hands it the HTML audit page, so it imports nothing of cli/).
  http: [...BELOW_APP, 'app', 'controller'],
  cli: [...BELOW_APP, 'app', 'controller', 'http'],
};

/** Where a row names a folder of which only some files may be imported: those files. */
export const ONLY_FILES: Readonly<Record<string, Readonly<Record<string, readonly string[]>>>> = {
  engines: { state: ['keys.ts', 'lua-script.ts', 'redis-client.ts'] },
};

/** The src/ folder a path is in, or undefined outside src/ (schemas/, the JSON schema). */
const layerOf = (path: string) => path.split('/src/')[1]?.split('/')[0];

/** An import of `specifier` from `file` that the table does not allow, as a message. */
export function tableViolation(file: string, specifier: string): string | undefined {
  if (!specifier.startsWith('.')) return undefined;
  const target = new URL(specifier, `file://${file}`).pathname;
  const from = layerOf(file);
  const to = layerOf(target);
  if (!from || !to || from === to) return undefined;
  const allowed = MAY_IMPORT[from];
  if (allowed === undefined) return `${file}: src/${from}/ has no row in the import table`;
  if (!allowed.includes(to)) return `${file} imports ${to}/ (${specifier})`;
  const only = ONLY_FILES[from]?.[to];
  const inFolder = target.split(`/src/${to}/`)[1]?.replace(/\.js$/, '.ts');
  if (only && !only.includes(inFolder ?? '')) {
    return `${file} imports ${to}/${inFolder} (${specifier}); of ${to}/ it may import only ${only.join(', ')}`;
  }
  return undefined;
}

describe('architecture', () => {
  it('every folder of src/ imports only what its row of the table allows', () => {
    const folders = readdirSync(fromRoot('src')).filter((d) =>
      statSync(fromRoot('src', d)).isDirectory(),
    );
    assert.deepEqual(
      folders.filter((d) => MAY_IMPORT[d] === undefined),
      [],
      'every folder has a row',
    );
    const files = folders.flatMap((dir) => tsFiles(fromRoot('src', dir)));
    const problems = files.flatMap((file) =>
      importsOf(readFileSync(file, 'utf8')).flatMap((s) => tableViolation(file, s) ?? []),
    );
    assert.deepEqual(problems, []);
    // The table catches what it must.
    assert.match(
      tableViolation(fromRoot('src', 'state', 'x.ts'), '../queue/run-plan.js') ?? '',
      /imports queue\//,
    );
    assert.equal(tableViolation(fromRoot('src', 'queue', 'x.ts'), '../state/keys.js'), undefined);
    // engines/ may import state/keys.ts, and nothing else of state/.
    const engine = fromRoot('src', 'engines', 'embedded', 'x.ts');
    assert.equal(tableViolation(engine, '../../state/keys.js'), undefined);
    assert.match(
      tableViolation(engine, '../../state/fleet-state.js') ?? '',
      /may import only keys\.ts/,
    );
    assert.match(tableViolation(engine, '../../spec/load-fleet.js') ?? '', /imports spec\//);
  });

  it("no code outside engines/ tests an engine's kind or makes its keys", () => {
    // The kinds are named where they are defined (the model, the capabilities table keyed by
    // them) and where the spec's ssh endpoint becomes the model's `Host.ssh`; everything else asks
    // model/engine-capabilities.ts. The embedded engine's keys are made in state/keys.ts only.
    const allowed = new Set([
      fromRoot('src', 'model', 'fleet.ts'),
      fromRoot('src', 'model', 'fleet-spec.generated.ts'),
      fromRoot('src', 'model', 'engine-capabilities.ts'),
      fromRoot('src', 'spec', 'normalize.ts'),
    ]);
    const kindTest =
      /(?:[!=]==?\s*'(?:embedded|local|ssh)'|'(?:embedded|local|ssh)'\s*[!=]==?|case\s+'(?:embedded|local|ssh)')/;
    const files = readdirSync(fromRoot('src'))
      .filter((d) => d !== 'engines' && statSync(fromRoot('src', d)).isDirectory())
      .flatMap((dir) => tsFiles(fromRoot('src', dir)))
      .filter((file) => !allowed.has(file));
    assert.ok(files.length > 20, 'found the sources');
    const problems = files.flatMap((file) => {
      const text = readFileSync(file, 'utf8');
      return [
        ...(kindTest.test(text) ? [`${file} tests an engine's kind`] : []),
        ...(/engineHostKeys|:engine:/.test(text) && !file.endsWith('/state/keys.ts')
          ? [`${file} makes or reads an engine's keys`]
          : []),
      ];
    });
    assert.deepEqual(problems, []);
    assert.ok(kindTest.test("if (host.engine === 'embedded')"), 'the check catches a kind test');
    assert.ok(kindTest.test("case 'ssh':"), 'and a switch on the kind');
  });

  it('no command imports another, and nothing in app/ writes to a terminal', () => {
    // A command parses, calls one operation of app/ and hands the result to a view; what two
    // commands share lives beside them (cli/apply-runner.ts, cli/open-session.ts), and app/
    // returns data and events (docs/architecture.md, "The folders").
    const commands = tsFiles(fromRoot('src', 'cli', 'commands'));
    assert.ok(commands.length >= 10, 'found the commands');
    const anotherCommand = (file: string, specifier: string) =>
      specifier.startsWith('./') || /\/commands\//.test(specifier)
        ? `${file} imports the command ${specifier}`
        : undefined;
    const imports = commands.flatMap((file) =>
      importsOf(readFileSync(file, 'utf8')).flatMap((s) => anotherCommand(file, s) ?? []),
    );
    assert.deepEqual(imports, []);
    assert.ok(anotherCommand('x', './plan-command.js'), 'the check catches a sibling command');
    const prints = /\bconsole\.|process\.(stdout|stderr)\.write|readline/;
    const app = tsFiles(fromRoot('src', 'app'));
    assert.ok(app.length >= 8, 'found the operations');
    assert.deepEqual(
      app.filter((file) => prints.test(readFileSync(file, 'utf8'))),
      [],
      'app/ prints nothing and asks nothing',
    );
  });

  it('pure modules import no I/O and no adapter', () => {
    const files = PURE.flatMap((dir) => tsFiles(fromRoot('src', dir)));
    assert.ok(files.length > 5, 'found the pure modules');
    const problems = files.flatMap((file) =>
      importsOf(readFileSync(file, 'utf8')).flatMap((s) => violation(file, s) ?? []),
    );
    assert.deepEqual(problems, []);
  });

  it('the check itself catches what it must', () => {
    const file = fromRoot('src', 'spec', 'x.ts');
    for (const bad of [
      "import { readFileSync } from 'node:fs';",
      "import x from 'ioredis'",
      "const q = await import('bullmq')",
      "export { s } from '../state/keys.js'",
    ]) {
      const found = importsOf(bad).flatMap((s) => violation(file, s) ?? []);
      assert.equal(found.length, 1, bad);
    }
    assert.deepEqual(
      importsOf("import { x } from '../model/fleet.js'").flatMap((s) => violation(file, s) ?? []),
      [],
    );
  });
});
