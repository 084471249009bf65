// The schema is the single source of truth (habit 6, docs/architecture.md): the generated types, the generated
// spec reference and the normalizer's defaults must all say what it says.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { generatedValidatorPath, generateValidator } from '../../scripts/gen-schema-validator.js';
import { generatedTypesPath, generateTypes } from '../../scripts/gen-types.js';
import { DEFAULTS } from '../../src/spec/normalize.js';
import { fleetSchema } from '../../src/spec/schema-check.js';

type SchemaNode = { properties?: Record<string, SchemaNode>; default?: unknown; $ref?: string };
const definitions = (fleetSchema as unknown as { definitions: Record<string, SchemaNode> })
  .definitions;
const defaultOf = (definition: string, ...path: string[]): unknown => {
  let node: SchemaNode | undefined = definitions[definition];
  for (const key of path) {
    node = node?.properties?.[key];
    if (node?.$ref && node.default === undefined && key !== path[path.length - 1]) {
      node = definitions[node.$ref.replace('#/definitions/', '')];
    }
  }
  return node?.default;
};

describe('schema drift', () => {
  it('src/model/fleet-spec.generated.ts is what scripts/gen-types.ts makes of the schema', async () => {
    assert.equal(
      readFileSync(generatedTypesPath, 'utf8'),
      await generateTypes(),
      'the schema changed: run `npm run gen` and commit the result',
    );
  });

  it('src/spec/fleet-schema-validator.generated.ts is what ajv makes of the schema', () => {
    assert.equal(
      readFileSync(generatedValidatorPath, 'utf8'),
      generateValidator(),
      'the schema changed: run `npm run gen` and commit the result',
    );
  });

  it("the normalizer's defaults are the schema's", () => {
    const pairs: Array<[unknown, unknown, string]> = [
      [DEFAULTS.failoverTolerate, defaultOf('failoverPolicy', 'tolerate'), 'failover.tolerate'],
      [DEFAULTS.failoverDomain, defaultOf('failoverPolicy', 'domain'), 'failover.domain'],
      [DEFAULTS.engine, defaultOf('host', 'engine'), 'host.engine'],
      [DEFAULTS.sshPort, defaultOf('host', 'port'), 'host.port'],
      [DEFAULTS.sshUser, defaultOf('host', 'user'), 'host.user'],
      [DEFAULTS.dataDir, defaultOf('host', 'dataDir'), 'host.dataDir'],
      [DEFAULTS.threadsPerCore, defaultOf('host', 'cpu', 'threadsPerCore'), 'cpu.threadsPerCore'],
      [DEFAULTS.overcommitCpu, defaultOf('host', 'overcommit', 'cpu'), 'overcommit.cpu'],
      [DEFAULTS.overcommitMemory, defaultOf('host', 'overcommit', 'memory'), 'overcommit.memory'],
      [DEFAULTS.allowEmulation, defaultOf('image', 'allowEmulation'), 'image.allowEmulation'],
      [DEFAULTS.coverFailover, defaultOf('licensePool', 'coverFailover'), 'license.coverFailover'],
      [DEFAULTS.replicas, defaultOf('instanceGroup', 'replicas'), 'group.replicas'],
      [DEFAULTS.diskGiB, defaultOf('instanceGroup', 'resources', 'diskGiB'), 'resources.diskGiB'],
      [
        DEFAULTS.strategy,
        defaultOf('instanceGroup', 'placement', 'strategy'),
        'placement.strategy',
      ],
      [DEFAULTS.groupFailover, defaultOf('instanceGroup', 'failover'), 'group.failover'],
    ];
    for (const [code, schema, name] of pairs) {
      assert.notEqual(schema, undefined, `the schema declares a default for ${name}`);
      assert.equal(code, schema, name);
    }
  });

  it('every object in the schema forbids unknown keys', () => {
    const open: string[] = [];
    const walk = (node: unknown, where: string) => {
      if (node === null || typeof node !== 'object') return;
      const n = node as Record<string, unknown>;
      if (n.type === 'object' && n.additionalProperties === undefined) open.push(where);
      for (const [key, child] of Object.entries(n)) walk(child, `${where}/${key}`);
    };
    walk(fleetSchema, '#');
    assert.deepEqual(open, []);
  });

  it('every string in the schema is bounded by maxLength or an enum/const', () => {
    const unbounded: string[] = [];
    const walk = (node: unknown, where: string) => {
      if (node === null || typeof node !== 'object') return;
      const n = node as Record<string, unknown>;
      if (n.type === 'string' && n.maxLength === undefined && n.enum === undefined)
        unbounded.push(where);
      for (const [key, child] of Object.entries(n)) walk(child, `${where}/${key}`);
    };
    walk(fleetSchema, '#');
    assert.deepEqual(unbounded, []);
  });
});

describe('spec reference drift', () => {
  it('docs/spec-reference.md is what scripts/gen-spec-docs.ts makes of the schema', async () => {
    const { generateSpecDocs, specReferencePath } = await import('../../scripts/gen-spec-docs.js');
    assert.equal(
      readFileSync(specReferencePath, 'utf8'),
      generateSpecDocs(),
      'the schema changed: run `npm run gen` and commit the result',
    );
  });
});
