// The tiny images the real-engine tests boot. They come from `scripts/build-test-images.sh`
// (being added on branch `images`, with its own test/helpers/test-images.ts; its files are a
// documented contract, docs/lab.md) when the repository has it, or from the script named by
// VFLEET_BUILD_TEST_IMAGES; until then this helper builds the same files itself, minimally,
// from this machine's busybox-static and the Debian kernel package (downloaded with apt-get,
// never installed). Either way they are cached in ${VFLEET_TEST_IMAGES:-~/.cache/vfleet/test-images}.
// Once branch `images` has landed, this can become a thin wrapper over its buildTestImages().
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { fromRoot } from './paths.js';

export interface TestImages {
  readonly dir: string;
  /** busybox + applet links, /etc/os-release, a dpkg database with real entries. */
  readonly rootfs: string;
  readonly vmlinuz: string;
  /** /init prints `readyMarker` on ttyS0 and stays up. */
  readonly initrd: string;
  /** An empty qcow2, the backing file of instance overlays. */
  readonly base: string;
  readonly readyMarker: string;
  /** The kernel command line the initrd expects (its console on ttyS0). */
  readonly cmdline: string;
  /** Which builder made them (for the test log). */
  readonly builtBy: string;
}

const FILES = ['busybox-rootfs.tar.gz', 'vmlinuz', 'initrd.img', 'base.qcow2'] as const;
const READY = 'VFLEET-GUEST-READY';
const CMDLINE = 'console=ttyS0 quiet panic=-1';

let cached: TestImages | undefined;

export function testImages(): TestImages {
  if (cached) return cached;
  const dir = process.env.VFLEET_TEST_IMAGES ?? `${homedir()}/.cache/vfleet/test-images`;
  mkdirSync(dir, { recursive: true });
  const script = [fromRoot('scripts', 'build-test-images.sh'), process.env.VFLEET_BUILD_TEST_IMAGES]
    .filter((p): p is string => p !== undefined && p !== '')
    .find((p) => existsSync(p));
  let builtBy: string;
  if (script) {
    execFileSync('bash', [script, '--out', dir], { stdio: ['ignore', 'ignore', 'inherit'] });
    builtBy = script;
  } else if (FILES.every((f) => existsSync(`${dir}/${f}`))) {
    builtBy = `cache ${dir}`;
  } else {
    buildMinimal(dir);
    builtBy = 'test/helpers/test-images.ts (fallback)';
  }
  // The script's manifest says what its initrd prints and wants; the fallback writes none.
  let manifest: { readyMarker?: string; cmdline?: string } = {};
  try {
    manifest = JSON.parse(readFileSync(`${dir}/manifest.json`, 'utf8'));
  } catch {
    // built by the fallback
  }
  cached = {
    dir,
    rootfs: `${dir}/busybox-rootfs.tar.gz`,
    vmlinuz: `${dir}/vmlinuz`,
    initrd: `${dir}/initrd.img`,
    base: `${dir}/base.qcow2`,
    readyMarker: manifest.readyMarker ?? READY,
    cmdline: manifest.cmdline ?? CMDLINE,
    builtBy,
  };
  return cached;
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

// --- the fallback: the same contract, built with less care for reproducibility ---------------

function sh(argv: string[], cwd?: string): string {
  const [program, ...args] = argv;
  return execFileSync(program as string, args, { cwd, stdio: ['ignore', 'pipe', 'inherit'] })
    .toString()
    .trim();
}

function installBusybox(root: string): void {
  for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin'])
    mkdirSync(`${root}/${d}`, { recursive: true });
  execFileSync('cp', ['/bin/busybox', `${root}/bin/busybox`]);
  for (const applet of sh(['/bin/busybox', '--list-full']).split('\n')) {
    if (!applet.includes('/') || applet === 'bin/busybox' || existsSync(`${root}/${applet}`))
      continue;
    execFileSync('ln', ['-s', '/bin/busybox', `${root}/${applet}`]);
  }
}

function buildMinimal(dir: string): void {
  const work = mkdtempSync(`${dir}/.fallback-`);
  try {
    const rootfs = `${work}/rootfs`;
    installBusybox(rootfs);
    for (const d of ['etc', 'proc', 'sys', 'dev', 'tmp', 'root', 'var/lib/dpkg/info']) {
      mkdirSync(`${rootfs}/${d}`, { recursive: true });
    }
    execFileSync('cp', ['/usr/lib/os-release', `${rootfs}/etc/os-release`]);
    const status = sh(['dpkg-query', '-s', 'busybox-static', 'base-files'])
      .split('\n')
      .filter((line, i, all) => {
        // Conffiles are not in the image: drop the field and its continuation lines.
        if (line.startsWith('Conffiles:')) return false;
        if (line.startsWith(' ')) {
          for (let j = i - 1; j >= 0; j--) {
            const prev = all[j] as string;
            if (!prev.startsWith(' ')) return !prev.startsWith('Conffiles:');
          }
        }
        return true;
      });
    writeFileSync(`${rootfs}/var/lib/dpkg/status`, `${status.join('\n')}\n`);
    sh(['tar', '--numeric-owner', '-czf', `${work}/busybox-rootfs.tar.gz`, '-C', rootfs, '.']);

    const depends = sh(['apt-cache', 'depends', 'linux-image-amd64']);
    const kernelPackage = /Depends: (linux-image-\S+)/.exec(depends)?.[1];
    if (!kernelPackage) throw new Error('apt knows no linux-image-amd64 (apt-get update?)');
    const download = `${work}/download`;
    mkdirSync(download);
    execFileSync('apt-get', ['download', '-qq', '-o', 'APT::Sandbox::User=root', kernelPackage], {
      cwd: download,
      stdio: 'inherit',
    });
    const deb = readdirSync(download).find((f) => f.endsWith('.deb')) as string;
    const tree = `${work}/kernel`;
    mkdirSync(tree);
    execFileSync('dpkg-deb', ['-x', `${download}/${deb}`, tree]);
    const vmlinuz = readdirSync(`${tree}/boot`).find((f) => f.startsWith('vmlinuz-')) as string;
    execFileSync('cp', [`${tree}/boot/${vmlinuz}`, `${work}/vmlinuz`]);

    const initrd = `${work}/initrd`;
    installBusybox(initrd);
    for (const d of ['dev', 'proc', 'sys', 'tmp']) mkdirSync(`${initrd}/${d}`, { recursive: true });
    writeFileSync(
      `${initrd}/init`,
      [
        '#!/bin/sh',
        '/bin/mount -t devtmpfs devtmpfs /dev',
        'exec </dev/console >/dev/console 2>&1',
        `echo ${READY}`,
        'while :; do sleep 2147483647 & wait; done',
        '',
      ].join('\n'),
      { mode: 0o755 },
    );
    execFileSync('sh', [
      '-c',
      // a fixed command line: the folders are this helper's own temporary ones
      'cd "$1" && find . | cpio --quiet -o -H newc | gzip -9 > "$2"',
      'sh',
      initrd,
      `${work}/initrd.img`,
    ]);
    sh(['qemu-img', 'create', '-q', '-f', 'qcow2', `${work}/base.qcow2`, '1G']);
    for (const f of FILES) execFileSync('mv', ['-f', `${work}/${f}`, `${dir}/${f}`]);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
