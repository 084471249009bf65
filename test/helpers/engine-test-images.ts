// The test images by the role the real-engine tests give them (rootfs, kernel, initrd, base
// disk): scripts/build-test-images.sh through test-images.ts' buildTestImages(), which caches
// them per machine (docs/lab.md). Asked once per test process.
import { execFileSync } from 'node:child_process';
import type { Image } from '../../src/model/fleet-spec.generated.js';
import { anImage } from './spec-builders.js';
import { buildTestImages } from './test-images.js';

export interface EngineTestImages {
  readonly dir: string;
  /** busybox + applet links, /etc/os-release, a dpkg database with real entries. */
  readonly rootfs: string;
  /** The compressed kernel: 8 MB to send to a host, about 5 s to boot under TCG. */
  readonly vmlinuz: string;
  /** The same kernel uncompressed: 66 MB (sparse on disk), about 2 s to boot under TCG. */
  readonly vmlinux: string;
  /** /init prints `readyMarker` on ttyS0 and stays up. */
  readonly initrd: string;
  /** An empty qcow2, the backing file of instance overlays. */
  readonly base: string;
  readonly readyMarker: string;
  /** The kernel command line the initrd expects (its console on ttyS0). */
  readonly cmdline: string;
}

let built: Promise<EngineTestImages> | undefined;

export function engineTestImages(): Promise<EngineTestImages> {
  built ??= buildTestImages().then((images) => ({
    dir: images.dir,
    rootfs: images.path('busybox-rootfs.tar.gz'),
    vmlinuz: images.path('vmlinuz'),
    vmlinux: images.path('vmlinux'),
    initrd: images.path('initrd.img'),
    base: images.path('base.qcow2'),
    readyMarker: images.manifest.readyMarker,
    cmdline: images.manifest.cmdline,
  }));
  return built;
}

/** The real dpkg status entries the rootfs carries: this machine's, for these packages. */
export function rootfsInventory(): Record<string, string> {
  const out = execFileSync('dpkg-query', [
    '-W',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's format, not a template
    '-f=${binary:Package}\\t${Version}\\n',
    'busybox-static',
    'base-files',
  ]).toString();
  return Object.fromEntries(
    out
      .trim()
      .split('\n')
      .map((l) => l.split('\t') as [string, string]),
  );
}

/**
 * The spec's image of a VM booting the test kernel and initrd on an empty overlay: the
 * uncompressed kernel (under TCG it boots in about 2 s instead of 5).
 */
export function tinyVmImage(images: EngineTestImages, os: Image['os']): Image {
  return anImage({
    name: 'tiny-vm',
    kind: 'vm',
    os,
    source: {
      disk: images.base,
      kernel: images.vmlinux,
      initrd: images.initrd,
      cmdline: `${images.cmdline} cryptomgr.notests`,
    },
    packages: {},
  });
}
