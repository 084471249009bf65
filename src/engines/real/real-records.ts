// RealEngine's files on a host that say what it holds: an instance's record
// (`instances/<name>/record.json`) and the fences (`fence/<name>`), read and written over the
// host's transport; the record a create writes first. The lock and the fence check around them
// are the engine's (real-engine.ts).
import { VfleetError } from '../../model/errors.js';
import type { Transport } from '../../transport/transport.js';
import type { InstanceRequest } from '../host-engine.js';
import { readText } from './host-commands.js';
import type { HostLayout } from './host-layout.js';
import type { InstanceRecord, Provisioned } from './instance-driver.js';

const NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** The instance's record on the host, or undefined; format 1 is read as format 2. */
export async function readRecord(
  t: Transport,
  layout: HostLayout,
  host: string,
  name: string,
): Promise<InstanceRecord | undefined> {
  const text = await readText(t, layout.record(name));
  if (text === undefined) return undefined;
  let record: InstanceRecord & { readonly name?: string };
  try {
    record = JSON.parse(text);
  } catch {
    throw new VfleetError('record-corrupt', `${host}: ${layout.record(name)} is not valid JSON`);
  }
  if (record.formatVersion !== 1) return record;
  // Format 1 (an older vfleet) named the instance `name`: read, and written again, as format 2.
  const { name: instance, ...rest } = record;
  return { ...rest, formatVersion: 2, instance: instance as string };
}

/** A new instance's record: the request's, and what its driver's provisioning made. */
export function newRecord(request: InstanceRequest, made: Provisioned): InstanceRecord {
  return {
    formatVersion: 2,
    instance: request.name,
    group: request.group,
    generation: request.generation,
    kind: request.image.kind,
    image: {
      name: request.image.name,
      os: request.image.os,
      packages: { ...request.image.packages },
      ...(request.image.command ? { command: [...request.image.command] } : {}),
      ...(request.image.source?.cmdline ? { cmdline: request.image.source.cmdline } : {}),
      staged: made.staged,
    },
    resources: { ...request.resources },
    packages: made.packages,
    driver: made.driver,
  };
}

/** The error of a call on an instance the host does not have. */
export function instanceMissing(host: string, name: string): VfleetError {
  return new VfleetError('instance-missing', `${name} does not exist on ${host}`);
}

/** Writes the record whole (Transport.writeFile: a temporary file renamed). */
export function writeRecord(
  t: Transport,
  layout: HostLayout,
  record: InstanceRecord,
): Promise<void> {
  return t.writeFile(layout.record(record.instance), `${JSON.stringify(record, null, 2)}\n`, 0o644);
}

/** Every fence on the host (tombstones included): the newest generation seen per name. */
export async function readFences(
  t: Transport,
  layout: HostLayout,
  host: string,
): Promise<ReadonlyMap<string, number>> {
  // One process for the whole folder: every line is `<folder>/<name>:<generation>`; exit 1 is
  // grep's "nothing matched" (no fences yet).
  const result = await t.exec(['grep', '-r', '-H', '-e', '', '--', layout.fences]);
  if (result.code > 1) {
    throw new VfleetError('command-failed', `${host}: cannot read ${layout.fences}`);
  }
  const fences = new Map<string, number>();
  const prefix = `${layout.fences}/`;
  for (const line of result.stdout.toString('utf8').split('\n')) {
    if (!line.startsWith(prefix)) continue;
    const [name, value] = line.slice(prefix.length).split(':');
    const generation = Number(value);
    if (name !== undefined && NAME.test(name) && Number.isSafeInteger(generation)) {
      fences.set(name, Math.max(generation, fences.get(name) ?? 0));
    }
  }
  return fences;
}
