// The root fleet.yaml as the CLI sees it: loaded, with its images' packagesFrom inventories read
// and its local paths made absolute (app/read-spec.ts), not only parsed.
import { readAndLoadFleet } from '../../src/app/read-spec.js';
import type { Fleet } from '../../src/model/fleet.js';
import { fromRoot } from './paths.js';

export function rootFleet(): Fleet {
  const loaded = readAndLoadFleet(fromRoot('fleet.yaml'));
  if (!loaded.fleet)
    throw new Error(`fleet.yaml does not load: ${JSON.stringify(loaded.diagnostics)}`);
  return loaded.fleet;
}
