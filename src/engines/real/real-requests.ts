// What RealEngine checks and builds outside its class: a request's values before they reach
// argument vectors and paths, and the driver context of a disk landing on another host.
import { VfleetError } from '../../model/errors.js';
import type { DiskLanding, InstanceRequest } from '../host-engine.js';
import { checkInstanceName, HostLayout } from './host-layout.js';
import { ImageStager } from './image-staging.js';
import type { DriverContext } from './instance-driver.js';

const NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Where a disk copied to a real host lands, as the source's driver writes it. */
export function landingContext(landing: DiskLanding, name: string): DriverContext {
  const layout = new HostLayout(landing.host, landing.dataDir);
  return {
    t: landing.transport,
    host: landing.host,
    instance: name,
    layout,
    stager: new ImageStager(landing.transport, layout),
    dir: layout.instanceDir(name),
  };
}

/** A request's values reach argument vectors and paths: each is checked for what it may be. */
export function checkRequest(host: string, request: InstanceRequest): void {
  checkInstanceName(host, request.name);
  const bad = (what: string) =>
    new VfleetError('invalid-request', `${host}: ${request.name}: ${what}`);
  if (!NAME.test(request.group)) throw bad('the group is not a DNS label');
  const kind = request.image?.kind;
  if (kind !== 'vm' && kind !== 'container') throw bad(`unknown kind ${String(kind)}`);
  for (const key of ['vcpus', 'memoryMiB', 'diskGiB'] as const) {
    const n = request.resources?.[key];
    if (!Number.isSafeInteger(n) || n <= 0)
      throw bad(`resources.${key} must be a positive integer`);
  }
  const command = request.image.command;
  if (
    command !== undefined &&
    (!Array.isArray(command) || command.some((a) => typeof a !== 'string' || a.includes('\0')))
  ) {
    throw bad('the command must be a list of strings without NUL');
  }
  const source = request.image.source ?? {};
  for (const key of ['rootfs', 'disk', 'kernel', 'initrd'] as const) {
    const path = source[key];
    if (path !== undefined && (!path.startsWith('/') || path.includes('\0'))) {
      throw bad(`source.${key} must be an absolute path on the machine vfleet runs on`);
    }
  }
  if (source.cmdline !== undefined && /[\0\n\r]/.test(source.cmdline)) {
    throw bad('source.cmdline must be one line');
  }
}
