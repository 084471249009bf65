// The images of scripts/build-test-images.sh keep the contract docs/lab.md gives: the manifest's
// hashes are the files', the rootfs is a busybox Debian 12 tree whose dpkg database dpkg-query
// reads, both kernels boot with the initrd to the ready marker under QEMU, and the ACPI power
// button powers the guest off. Real QEMU (habit 10, docs/architecture.md); the first run builds, later ones reuse
// the cache. QEMU runs under TCG unless VFLEET_QEMU_ACCEL says otherwise: a /dev/kvm can exist
// and still not run a stock kernel (docs/lab.md), and `accel=kvm:tcg` would then pick it and hang.
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  createReadStream,
  existsSync,
  lstatSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
} from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import {
  buildTestImages,
  imageTools,
  missingTools,
  type TestImageFile,
  type TestImages,
} from '../helpers/test-images.js';

const run = promisify(execFile);
const accel = process.env.VFLEET_QEMU_ACCEL || 'tcg';
/** Under TCG on a busy two-core machine a boot takes 2 to 8 s; this is for much worse days. */
const BOOT_TIMEOUT_MS = 180_000;
const POWEROFF_TIMEOUT_MS = 60_000;
const BUILD_TIMEOUT_MS = 15 * 60_000;

const missing = missingTools({
  ...imageTools,
  tar: 'tar',
  'qemu-system-x86_64': 'qemu-system-x86',
});
const tempDirs: string[] = [];
const vms: ChildProcess[] = [];

function aTempDir(purpose: string): string {
  const dir = mkdtempSync(`${tmpdir()}/vfleet-${purpose}-`);
  tempDirs.push(dir);
  return dir;
}

after(() => {
  for (const vm of vms) if (vm.exitCode === null && vm.signalCode === null) vm.kill('SIGKILL');
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

function sha256Of(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(path)
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}

/** One QMP command on a fresh connection: greeting, capabilities, the command, its reply. */
function qmp(socket: string, command: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const conn = createConnection(socket);
    let buffer = '';
    let replies = 0;
    conn.setTimeout(10_000, () => {
      conn.destroy();
      reject(new Error(`QMP ${command}: no answer`));
    });
    conn.on('error', reject);
    conn.on('data', (chunk) => {
      buffer += chunk;
      let newline = buffer.indexOf('\n');
      while (newline >= 0) {
        const message = JSON.parse(buffer.slice(0, newline)) as Record<string, unknown>;
        buffer = buffer.slice(newline + 1);
        newline = buffer.indexOf('\n');
        if ('error' in message) {
          conn.destroy();
          reject(new Error(`QMP ${command}: ${JSON.stringify(message.error)}`));
          return;
        }
        if ('QMP' in message) conn.write('{"execute":"qmp_capabilities"}\n');
        else if ('return' in message && ++replies === 1)
          conn.write(`${JSON.stringify({ execute: command })}\n`);
        else if ('return' in message) {
          conn.end();
          resolve();
        }
      }
    });
  });
}

interface BootedVm {
  readonly child: ChildProcess;
  readonly serial: string;
  readonly qmpSocket: string;
  readonly exited: Promise<void>;
  /** What QEMU printed on stderr so far. */
  stderr(): string;
}

function boot(images: TestImages, kernel: TestImageFile): BootedVm {
  const dir = aTempDir('vm');
  const serial = `${dir}/serial.log`;
  const qmpSocket = `${dir}/qmp.sock`;
  // -nodefaults: no NIC (so no iPXE option ROM), no VGA; the ACPI power button is the machine's.
  const child = spawn(
    'qemu-system-x86_64',
    [
      '-machine',
      `accel=${accel}`,
      '-m',
      '128',
      '-nodefaults',
      '-display',
      'none',
      '-no-reboot',
      '-kernel',
      images.path(kernel),
      '-initrd',
      images.path('initrd.img'),
      '-append',
      images.manifest.cmdline,
      '-serial',
      `file:${serial}`,
      '-qmp',
      `unix:${qmpSocket},server=on,wait=off`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  vms.push(child);
  let stderr = '';
  child.stderr?.on('data', (chunk) => {
    stderr += chunk;
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return { child, serial, qmpSocket, exited, stderr: () => stderr };
}

/** Waits for a whole line on the serial console; fails early if QEMU is gone. */
async function waitForLine(vm: BootedVm, line: string, timeoutMs: number): Promise<void> {
  const pattern = new RegExp(`^${line}\\r?$`, 'm');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = existsSync(vm.serial) ? readFileSync(vm.serial, 'latin1') : '';
    if (pattern.test(text)) return;
    if (vm.child.exitCode !== null || vm.child.signalCode !== null)
      assert.fail(`QEMU exited before "${line}": ${vm.stderr()}\nserial console:\n${text}`);
    if (Date.now() > deadline)
      assert.fail(`no "${line}" within ${timeoutMs} ms; serial console:\n${text}`);
    await delay(100);
  }
}

async function powerOff(vm: BootedVm): Promise<void> {
  await qmp(vm.qmpSocket, 'system_powerdown');
  const timedOut = delay(POWEROFF_TIMEOUT_MS, 'timeout' as const, { ref: false });
  const outcome = await Promise.race([vm.exited.then(() => 'exited' as const), timedOut]);
  assert.equal(outcome, 'exited', 'the guest powers off on the ACPI power button');
  assert.equal(vm.child.exitCode, 0, vm.stderr());
}

describe('test images (scripts/build-test-images.sh)', {
  skip: missing.length > 0 && `needs ${missing.join(', ')}`,
}, () => {
  let images: TestImages;

  before(
    async () => {
      images = await buildTestImages();
    },
    { timeout: BUILD_TIMEOUT_MS },
  );

  it('lists every file of the contract in the manifest, with its sha256', async () => {
    assert.deepEqual(Object.keys(images.manifest.files).sort(), [
      'base.qcow2',
      'busybox-rootfs.tar.gz',
      'initrd.img',
      'vmlinux',
      'vmlinuz',
    ]);
    for (const [file, sha256] of Object.entries(images.manifest.files))
      assert.equal(await sha256Of(images.path(file as TestImageFile)), sha256, file);
    assert.match(images.manifest.kernelPackage, /^linux-image-[0-9.]+-[0-9]+-amd64$/);
    assert.match(images.manifest.key, /^[0-9a-f]{64}$/);
    assert.equal(images.manifest.readyMarker, 'VFLEET-GUEST-READY');
  });

  it('uses the cache on a second run', async () => {
    const again = await buildTestImages(images.dir);
    assert.equal(again.output, `test images up to date in ${images.dir}\n`);
    assert.deepEqual(again.manifest, images.manifest);
  });

  it('has a busybox Debian 12 rootfs whose dpkg database dpkg-query lists', async () => {
    const root = aTempDir('rootfs');
    await run('tar', ['-xzf', images.path('busybox-rootfs.tar.gz'), '-C', root]);
    assert.ok(lstatSync(`${root}/bin/busybox`).isFile());
    for (const applet of ['sh', 'sleep', 'cat', 'ps'])
      assert.ok(lstatSync(`${root}/bin/${applet}`).isSymbolicLink(), applet);
    assert.equal(readlinkSync(`${root}/bin/sh`), '../bin/busybox');
    for (const dir of ['proc', 'sys', 'dev', 'tmp'])
      assert.deepEqual(readdirSync(`${root}/${dir}`), [], dir);
    const osRelease = readFileSync(`${root}/etc/os-release`, 'utf8');
    assert.match(osRelease, /^ID=debian$/m);
    assert.match(osRelease, /^VERSION_ID="12"$/m);

    const { stdout } = await run('dpkg-query', [
      `--admindir=${root}/var/lib/dpkg`,
      '-W',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's format, not JavaScript's
      '-f=${binary:Package}\t${Version}\n',
    ]);
    const packages = new Map(
      stdout
        .trim()
        .split('\n')
        .map((line) => line.split('\t') as [string, string]),
    );
    assert.equal(packages.get('busybox-static'), images.manifest.busyboxVersion);
    assert.match(packages.get('base-files') ?? '', /^12\./);
  });

  it('has an empty qcow2 that overlays back onto', async () => {
    const dir = aTempDir('overlay');
    await run('qemu-img', [
      'create',
      '-q',
      '-f',
      'qcow2',
      '-b',
      images.path('base.qcow2'),
      '-F',
      'qcow2',
      `${dir}/overlay.qcow2`,
    ]);
    const { stdout } = await run('qemu-img', ['info', '--output=json', `${dir}/overlay.qcow2`]);
    const info = JSON.parse(stdout) as {
      format: string;
      'backing-filename': string;
      'virtual-size': number;
    };
    assert.equal(info.format, 'qcow2');
    assert.equal(info['backing-filename'], images.path('base.qcow2'));
    assert.equal(info['virtual-size'], 1024 ** 3);
  });

  for (const kernel of ['vmlinuz', 'vmlinux'] as const) {
    it(`boots ${kernel} with the initrd to the ready marker, and powers off on the power button`, {
      timeout: BOOT_TIMEOUT_MS + POWEROFF_TIMEOUT_MS + 10_000,
    }, async () => {
      const vm = boot(images, kernel);
      await waitForLine(vm, images.manifest.readyMarker, BOOT_TIMEOUT_MS);
      await powerOff(vm);
    });
  }
});
