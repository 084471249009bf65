// Generates src/model/fleet-spec.generated.ts from schemas/fleet.schema.json.
// The schema is the single source of truth (habit 6, docs/architecture.md); test/schema-drift.test.ts fails when
// the checked-in file differs from what this script would write.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { compile, type JSONSchema } from 'json-schema-to-typescript';

export const schemaPath = fileURLToPath(
  new URL('../../schemas/fleet.schema.json', import.meta.url),
);
export const generatedTypesPath = fileURLToPath(
  new URL('../../src/model/fleet-spec.generated.ts', import.meta.url),
);

export async function generateTypes(): Promise<string> {
  const schema = JSON.parse(readFileSync(schemaPath, 'utf8')) as JSONSchema;
  return compile(schema, 'FleetDocument', {
    bannerComment:
      '// Generated from schemas/fleet.schema.json by scripts/gen-types.ts (npm run gen). Do not edit.',
    additionalProperties: false,
    unreachableDefinitions: false,
    style: { singleQuote: true, printWidth: 100 },
    format: true,
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeFileSync(generatedTypesPath, await generateTypes());
  console.log(`wrote ${generatedTypesPath}`);
}
