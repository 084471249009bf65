// Generates src/spec/fleet-schema-validator.generated.ts: schemas/fleet.schema.json compiled by
// ajv ahead of time (its standalone code), with the options spec/schema-check.ts validates with.
// Compiling the schema when a command starts took longer than validating a 100,000-instance
// spec with it (and loading ajv's compiler besides): every command that reads a spec paid it.
// test/spec/schema-drift.test.ts fails when the checked-in file differs from what this writes.
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import standaloneCode from 'ajv/dist/standalone/index.js';
import formatsPlugin from 'ajv-formats';
import schema from '../schemas/fleet.schema.json' with { type: 'json' };

export const generatedValidatorPath = fileURLToPath(
  new URL('../../src/spec/fleet-schema-validator.generated.ts', import.meta.url),
);

/** The options schema-check.ts's validation has (the messages it makes depend on them). */
export const VALIDATION_OPTIONS = { strict: true, allErrors: true, verbose: true, $data: false };

export function generateValidator(): string {
  const ajv = new Ajv({ ...VALIDATION_OPTIONS, code: { source: true, esm: true } });
  // ajv-formats is CommonJS; under NodeNext its default export arrives as `.default`.
  formatsPlugin.default(ajv);
  const code = standaloneCode.default(ajv, ajv.compile(schema));
  // ajv's ES module output still `require`s its runtime helpers: imported instead.
  const helpers: string[] = [];
  const body = code.replace(
    /require\("ajv\/dist\/runtime\/([a-z0-9]+)"\)\.default/g,
    (_, helper: string) => {
      helpers.push(helper);
      return `${helper}Helper.default`;
    },
  );
  if (/require\(/.test(body)) throw new Error('ajv standalone code requires something unexpected');
  return [
    '// Generated from schemas/fleet.schema.json by scripts/gen-schema-validator.ts (npm run gen).',
    '// Do not edit. ajv standalone code: the schema compiled ahead of time (spec/schema-check.ts).',
    '// @ts-nocheck',
    ...[...new Set(helpers)].map(
      (helper) => `import ${helper}Helper from 'ajv/dist/runtime/${helper}.js';`,
    ),
    body.replace(/^"use strict";/, ''),
    '',
  ].join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeFileSync(generatedValidatorPath, generateValidator());
  console.log(`wrote ${generatedValidatorPath}`);
}
