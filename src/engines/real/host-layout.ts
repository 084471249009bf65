// Where vfleet keeps things on a real host, under the host's `dataDir` (default /var/lib/vfleet).
// Every path the drivers touch is made here, from the data folder and a validated instance
// name, so no other value from a spec ever becomes part of a path:
//
//   <dataDir>/instances/<name>/   record.json and the driver's files (disk, rootfs, pidfile, …)
//   <dataDir>/fence/<name>        the newest generation seen; outlives the instance (tombstone)
//   <dataDir>/locks/<name>/       the instance's lock (mkdir), with its owner inside
//   <dataDir>/images/<sha256>/    image files staged from the machine that runs vfleet
//   <dataDir>/bin/                vfleet's fixed host-side helper, named by its own sha256
//   <dataDir>/replicas/<name>/    the replica of a VM another host runs (vm-replication.ts)
import { VfleetError } from '../../model/errors.js';

const NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const SHA256 = /^[0-9a-f]{64}$/;

/** Whether `name` may be an instance's (a DNS label), so a path or an argument. */
export function isInstanceName(name: string): boolean {
  return NAME.test(name);
}

/** Refuses anything that is not a DNS label before it can reach a path or an argument. */
export function checkInstanceName(host: string, name: string): void {
  if (typeof name !== 'string' || !NAME.test(name)) {
    throw new VfleetError(
      'invalid-name',
      `${host}: ${JSON.stringify(String(name).slice(0, 80))} is not an instance name (a DNS label)`,
    );
  }
}

/**
 * A folder vfleet may make and remove (`rm -rf`) on a host, without its trailing slashes; or
 * undefined when it is not absolute, climbs (`.`, `..`), holds a NUL or a line break, or is `/`.
 */
export function cleanFolder(path: string): string | undefined {
  const clean = path.replace(/\/+$/, '');
  const bad =
    !clean.startsWith('/') ||
    clean.split('/').some((part) => part === '.' || part === '..') ||
    /[\0\n\r]/.test(clean) ||
    clean.length < 2;
  return bad ? undefined : clean;
}

export class HostLayout {
  readonly dataDir: string;

  constructor(host: string, dataDir: string) {
    // The schema already restricts dataDir; the engine checks again because it builds `rm -rf`
    // targets from it.
    const clean = cleanFolder(dataDir);
    if (clean === undefined) {
      throw new VfleetError(
        'invalid-data-dir',
        `${host}: dataDir ${JSON.stringify(dataDir)} must be an absolute path`,
      );
    }
    this.dataDir = clean;
  }

  get instances(): string {
    return `${this.dataDir}/instances`;
  }
  get fences(): string {
    return `${this.dataDir}/fence`;
  }
  get locks(): string {
    return `${this.dataDir}/locks`;
  }
  get images(): string {
    return `${this.dataDir}/images`;
  }
  get bin(): string {
    return `${this.dataDir}/bin`;
  }
  get replicas(): string {
    return `${this.dataDir}/replicas`;
  }

  instanceDir(name: string): string {
    if (!NAME.test(name)) throw new Error(`instanceDir: ${name} is not a DNS label`);
    return `${this.instances}/${name}`;
  }
  record(name: string): string {
    return `${this.instanceDir(name)}/record.json`;
  }
  fence(name: string): string {
    if (!NAME.test(name)) throw new Error(`fence: ${name} is not a DNS label`);
    return `${this.fences}/${name}`;
  }
  lock(name: string): string {
    if (!NAME.test(name)) throw new Error(`lock: ${name} is not a DNS label`);
    return `${this.locks}/${name}`;
  }
  /** Where this host keeps the replica of another host's VM (vm-replication.ts). */
  replicaDir(name: string): string {
    if (!NAME.test(name)) throw new Error(`replicaDir: ${name} is not a DNS label`);
    return `${this.replicas}/${name}`;
  }
  imageDir(sha256: string): string {
    if (!SHA256.test(sha256)) throw new Error(`imageDir: ${sha256} is not a sha256`);
    return `${this.images}/${sha256}`;
  }
}
