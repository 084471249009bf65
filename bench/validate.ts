// `npm run bench:validate`: how long `validate` takes on generated fleets, as a ratio to the
// plain `yaml.parse()` of the same text measured in the same run (STYLE.md #11: ratios from one
// run, no time assertions), and how quickly hostile YAML is refused.
//
// Exits 1 when a generated spec does not validate or a hostile document is not refused; the
// times themselves never fail the run.
import { availableParallelism } from 'node:os';
import { parse } from 'yaml';
import { generateFleetYaml } from '../examples/generate.js';
import type { DiagnosticCode } from '../src/model/diagnostic.js';
import { loadFleet } from '../src/spec/load-fleet.js';

const RUNS = 5;
const FILE = 'bench.yaml';

const count = (n: number) => n.toLocaleString('en-US');
const ms = (t: number) => (t < 10 ? t.toFixed(1) : t.toFixed(0));

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

function time(run: () => unknown): number {
  const start = performance.now();
  run();
  return performance.now() - start;
}

interface Case {
  readonly hosts: number;
  readonly instances: number;
  readonly groupSize: number;
}

const CASES: readonly Case[] = [
  { hosts: 100, instances: 2_000, groupSize: 50 },
  { hosts: 1_000, instances: 20_000, groupSize: 50 },
  { hosts: 1_000, instances: 20_000, groupSize: 1 },
];

let failures = 0;

process.stdout.write(
  `node ${process.version}, ${availableParallelism()} CPUs, ${process.platform}/${process.arch}; median of ${RUNS} runs\n`,
);

for (const c of CASES) {
  const text = generateFleetYaml({ ...c, seed: 1 });
  const bytes = new TextEncoder().encode(text);
  const validateTimes: number[] = [];
  const parseTimes: number[] = [];
  let result = loadFleet(bytes, FILE);
  // Alternate the two so that drift (JIT warm-up, GC, a busy neighbour) hits both alike.
  for (let run = 0; run < RUNS; run++) {
    parseTimes.push(time(() => parse(text)));
    validateTimes.push(
      time(() => {
        result = loadFleet(bytes, FILE);
      }),
    );
  }
  const groups = result.document?.spec.instances?.length ?? 0;
  const validate = median(validateTimes);
  const baseline = median(parseTimes);
  const errors = result.diagnostics.filter((d) => d.severity === 'error');
  const warnings = result.diagnostics.length - errors.length;
  process.stdout.write(
    `validate ${count(c.instances)} instances (${count(groups)} groups of ~${c.groupSize}, ${count(c.hosts)} hosts, ${count(bytes.length)} bytes): ${ms(validate)} ms, ${(validate / baseline).toFixed(1)}x yaml.parse (${ms(baseline)} ms)${warnings ? `; ${warnings} warnings` : ''}\n`,
  );
  if (errors.length > 0 || result.fleet === undefined) {
    failures++;
    process.stdout.write(
      `  FAILED: the generated spec does not validate (${errors.length} errors)\n`,
    );
    for (const d of errors.slice(0, 10)) {
      process.stdout.write(`  ${d.file}:${d.line}:${d.column}: ${d.message} [${d.code}]\n`);
    }
  }
}

// One big mapping, through the careful path (positions for every key): its cost per key must
// not grow with the map. The baseline is yaml.parse with uniqueKeys off (yaml's default check
// compares each key with every earlier one: quadratic itself). The ratio stays flat from 10,000
// to 40,000 keys when validate is linear; with yaml's check it grew fourfold.
function wideMapSpec(keys: number): string {
  const packages = Array.from({ length: keys }, (_, i) => `        pkg-${i}: "1.${i}"`).join('\n');
  return `apiVersion: vfleet/v1
kind: Fleet
metadata: { name: wide }
spec:
  hosts:
    - name: h-0
      cpu: { sockets: 1, coresPerSocket: 8, threadsPerCore: 1 }
      memoryMiB: 65536
      diskGiB: 100
      os: { family: debian, release: "12", arch: x86_64 }
      runs: [container]
  images:
    - name: debian-12
      kind: container
      os: { family: debian, release: "12", arch: x86_64 }
      packages:
${packages}
  instances:
    - name: web
      image: debian-12
      replicas: 1
      resources: { vcpus: 1, memoryMiB: 64 }
`;
}

const wideRatios: number[] = [];
for (const keys of [10_000, 40_000]) {
  const text = wideMapSpec(keys);
  const bytes = new TextEncoder().encode(text);
  const validateTimes: number[] = [];
  const parseTimes: number[] = [];
  let result = loadFleet(bytes, FILE, { fast: false });
  for (let run = 0; run < RUNS; run++) {
    parseTimes.push(time(() => parse(text, { uniqueKeys: false })));
    validateTimes.push(
      time(() => {
        result = loadFleet(bytes, FILE, { fast: false });
      }),
    );
  }
  const validate = median(validateTimes);
  const baseline = median(parseTimes);
  wideRatios.push(validate / baseline);
  process.stdout.write(
    `validate one mapping of ${count(keys)} keys, careful path (${count(bytes.length)} bytes): ${ms(validate)} ms, ${(validate / baseline).toFixed(1)}x yaml.parse without uniqueKeys (${ms(baseline)} ms)\n`,
  );
  if (result.fleet === undefined) {
    failures++;
    process.stdout.write(`  FAILED: the wide spec does not validate\n`);
  }
}
process.stdout.write(
  `  40,000 keys vs 10,000: ${((wideRatios[1] as number) / (wideRatios[0] as number)).toFixed(2)}x the ratio (1 is linear, 4 quadratic)\n`,
);

// Hostile input: each must be refused with its code, and quickly.
const HEADER = 'apiVersion: vfleet/v1\nkind: Fleet\nmetadata: { name: bomb }\n';

function billionLaughs(levels: number, fanout: number): string {
  const lines = [`l0: &l0 [${Array.from({ length: fanout }, () => '"lol"').join(', ')}]`];
  for (let level = 1; level <= levels; level++) {
    const refs = Array.from({ length: fanout }, () => `*l${level - 1}`).join(', ');
    lines.push(`l${level}: &l${level} [${refs}]`);
  }
  return `${HEADER}${lines.join('\n')}\nspec: { hosts: *l${levels}, images: [] }\n`;
}

const HOSTILE: readonly { name: string; text: string; code: DiagnosticCode }[] = [
  { name: 'alias bomb (9 levels x 9 aliases)', text: billionLaughs(9, 9), code: 'alias-limit' },
  {
    name: 'flow nesting 100,000 deep',
    text: `${HEADER}spec: ${'['.repeat(100_000)}${']'.repeat(100_000)}\n`,
    code: 'nesting-too-deep',
  },
];

for (const { name, text, code } of HOSTILE) {
  const bytes = new TextEncoder().encode(text);
  const times: number[] = [];
  let result = loadFleet(bytes, FILE);
  for (let run = 0; run < RUNS; run++) {
    times.push(
      time(() => {
        result = loadFleet(bytes, FILE);
      }),
    );
  }
  const codes = [...new Set(result.diagnostics.map((d) => d.code))];
  const refused = result.fleet === undefined && codes.includes(code);
  process.stdout.write(
    `${name} (${count(bytes.length)} bytes): ${refused ? 'refused' : 'NOT REFUSED'} [${codes.join(', ') || 'no diagnostics'}] in ${ms(median(times))} ms\n`,
  );
  if (!refused) failures++;
}

const peak = process.resourceUsage().maxRSS; // KiB
process.stdout.write(`peak RSS: ${count(Math.round(peak / 1024))} MiB\n`);
if (failures > 0) {
  process.stdout.write(`${failures} check(s) failed\n`);
  process.exitCode = 1;
}
