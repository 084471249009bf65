// The VM the tests of patching VMs with APT boot (docs/patching.md, "VMs over SSH"):
// scripts/build-apt-vm-image.sh, built once per machine and cached next to the apt test images
// (a concurrent build — CI's background one — is waited for on the script's lock; a build that
// cannot reach Debian's archive fails, and so does the test that asked for it).
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import type { InstanceRequest } from '../../src/engines/host-engine.js';
import { fromRoot } from './paths.js';
import { vmRequest } from './real-hosts.js';
import { testImagesDir } from './test-images.js';

const run = promisify(execFile);

export interface AptVmImage {
  readonly dir: string;
  /** The disk (the name vmRequest reads: instances get an overlay on it). */
  readonly base: string;
  readonly vmlinuz: string;
  readonly initrd: string;
  readonly cmdline: string;
  /** The private key vfleet logs into the guest with (never read by a test). */
  readonly loginKey: string;
  /** The guest's sshd's public key line, which vfleet pins. */
  readonly hostKey: string;
  readonly readyMarker: string;
  /** What the script printed: "apt VM image up to date in …" when the cache was used. */
  readonly output: string;
}

let built: Promise<AptVmImage> | undefined;

/** Runs the script (cached after the first time) and names what it made. */
export function aptVmImage(dir = testImagesDir()): Promise<AptVmImage> {
  built ??= run('bash', [fromRoot('scripts/build-apt-vm-image.sh'), '--out', dir], {
    maxBuffer: 16 * 1024 * 1024,
  }).then(({ stdout, stderr }) => {
    const m = JSON.parse(readFileSync(`${dir}/apt-vm-manifest.json`, 'utf8')) as Record<
      string,
      string
    >;
    const at = (key: string) => `${dir}/${m[key]}`;
    return {
      dir,
      base: at('disk'),
      vmlinuz: at('kernel'),
      initrd: at('initrd'),
      cmdline: m.cmdline as string,
      loginKey: at('loginKey'),
      hostKey: m.hostKey as string,
      readyMarker: m.readyMarker as string,
      output: stdout + stderr,
    };
  });
  return built;
}

/**
 * A VM of the image whose guest vfleet reaches over ssh, the demo repository's port forwarded
 * to it as the image's apt source expects (10.0.2.100:80).
 */
export function aptVmRequest(
  image: AptVmImage,
  name: string,
  generation: number,
  repoPort: number,
): InstanceRequest {
  const request = vmRequest(image, name, generation, { vcpus: 1, memoryMiB: 384, diskGiB: 2 });
  return {
    ...request,
    image: {
      ...request.image,
      name: 'debian12-vm',
      // Nothing from the spec: what the VM reports is what its dpkg says.
      packages: {},
      guest: {
        user: 'root',
        port: 22,
        hostKey: image.hostKey,
        identityFile: image.loginKey,
        forwards: [{ port: 80, hostPort: repoPort }],
      },
    },
  };
}
