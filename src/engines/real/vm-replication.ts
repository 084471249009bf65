// Disk replication of a VM to its failover host (issue 15, docs/replication-qemu.md): the module the
// engine uses. The source takes increments of the running VM's disk (vm-increments.ts), each
// is shipped to the target here, and the target keeps them as a chain with a consistent point
// (replica-chain.ts), from which a restart there gets its disk.
//
//   source: takeIncrement → shipIncrement → dropIncrement       target: applyIncrement
//   target: readReplica(s), diskFromReplica (a failover), dropReplica
import { VfleetError } from '../../model/errors.js';
import { run, type Transport } from '../../transport/transport.js';
import { copyChecked, mkdirs } from './host-commands.js';
import { cleanFolder } from './host-layout.js';
import { arrivalPath } from './replica-chain.js';
import type { ReplicaIncrement } from './vm-increments.js';

export {
  type ArrivingIncrement,
  applyIncrement,
  diskFromReplica,
  dropReplica,
  type ReplicaOptions,
  type ReplicaPoint,
  readReplica,
  readReplicas,
} from './replica-chain.js';
export {
  dropIncrement,
  type ReplicaIncrement,
  type TakeIncrementOptions,
  takeIncrement,
} from './vm-increments.js';

/**
 * Moves an increment from the source host to the target's replica folder (the two may be one
 * machine with two data folders, local or over ssh: the bytes stream through the machine vfleet
 * runs on, as a move's disk does), checked by sha256 where it landed. A copy that differs is
 * removed and fails (`replica-corrupt`, retryable); the replica's point is not touched.
 */
export async function shipIncrement(
  from: Transport,
  inc: ReplicaIncrement,
  to: Transport,
  replicaDir: string,
  options: { readonly timeoutMs?: number } = {},
): Promise<void> {
  if (!/^[0-9a-f]{64}$/.test(inc.sha256)) {
    throw new VfleetError(
      'invalid-request',
      `${from.host}: increment of ${inc.instance}: no sha256`,
    );
  }
  const dir = cleanFolder(replicaDir);
  if (dir === undefined) {
    throw new VfleetError('invalid-request', `${to.host}: ${replicaDir} is not a replica folder`);
  }
  const landing = arrivalPath(dir, inc);
  const partial = `${landing}.partial`;
  await mkdirs(to, `${dir}/incoming`);
  await copyChecked(from, inc.path, to, partial, {
    expected: inc.sha256,
    code: 'replica-corrupt',
    what: `increment ${inc.seq} of ${inc.instance}`,
    ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}),
  });
  await run(to, ['mv', '-T', '--', partial, landing]);
}
