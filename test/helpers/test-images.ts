// The tiny images of scripts/build-test-images.sh (docs/lab.md) for tests that boot a VM or
// unpack a sandbox. The script caches them per machine, so only the first run pays for the
// build; concurrent test files wait on the script's lock instead of building twice.
import { execFile } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { promisify } from 'node:util';
import { fromRoot } from './paths.js';

const run = promisify(execFile);

/** The manifest.json the script writes next to the images. */
export interface TestImagesManifest {
  readonly formatVersion: number;
  readonly key: string;
  readonly kernelPackage: string;
  readonly kernelVersion: string;
  readonly kernelRelease: string;
  readonly busyboxPackage: string;
  readonly busyboxVersion: string;
  readonly osId: string;
  readonly osVersionId: string;
  readonly readyMarker: string;
  readonly cmdline: string;
  /** File name to its sha256 (hex). */
  readonly files: Readonly<Record<string, string>>;
}

export interface TestImages {
  readonly dir: string;
  readonly manifest: TestImagesManifest;
  /** What the script printed: "test images up to date in …" when the cache was used. */
  readonly output: string;
  path(file: TestImageFile): string;
}

export type TestImageFile =
  | 'busybox-rootfs.tar.gz'
  | 'vmlinuz'
  | 'vmlinux'
  | 'initrd.img'
  | 'base.qcow2'
  | 'manifest.json';

/** Where the script puts the images when not given --out. */
export function testImagesDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.VFLEET_TEST_IMAGES || `${env.HOME || homedir()}/.cache/vfleet/test-images`;
}

/** Commands the script needs, each with the Debian package that provides it. */
export const imageTools: Readonly<Record<string, string>> = {
  'dpkg-query': 'dpkg',
  'apt-get': 'apt',
  cpio: 'cpio',
  xz: 'xz-utils',
  'qemu-img': 'qemu-utils',
  busybox: 'busybox-static',
};

/** Runs the script (cached after the first time) and reads what it made. */
export async function buildTestImages(dir = testImagesDir()): Promise<TestImages> {
  const { stdout, stderr } = await run(
    'bash',
    [fromRoot('scripts/build-test-images.sh'), '--out', dir],
    { maxBuffer: 16 * 1024 * 1024 },
  );
  const manifest = JSON.parse(readFileSync(`${dir}/manifest.json`, 'utf8')) as TestImagesManifest;
  return { dir, manifest, output: stdout + stderr, path: (file) => `${dir}/${file}` };
}

/** The tools of `needs` that are not on the PATH, each as "tool (apt-get install package)". */
export function missingTools(needs: Readonly<Record<string, string>>): string[] {
  const dirs = (process.env.PATH ?? '').split(':').filter(Boolean);
  const found = (tool: string) =>
    dirs.some((d) => {
      try {
        accessSync(`${d}/${tool}`, constants.X_OK);
        return true;
      } catch {
        return false;
      }
    });
  return Object.entries(needs)
    .filter(([tool]) => !found(tool))
    .map(([tool, pkg]) => `${tool} (apt-get install ${pkg})`);
}
