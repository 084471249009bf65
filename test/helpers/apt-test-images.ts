// What the tests of patching with APT use (docs/patching.md): the Debian 12 rootfs and the demo
// APT repository of scripts/build-apt-test-images.sh (built once per machine and cached, like
// the other test images: a build that cannot reach Debian's archive fails, and so does the test
// that asked for it), the repository served over HTTP on loopback as a mirror is, and a copy of
// the rootfs whose apt sources name that server.
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { promisify } from 'node:util';
import { fromRoot } from './paths.js';
import { testImagesDir } from './test-images.js';

const run = promisify(execFile);

/** PID 1 of the Debian sandboxes: dash, exiting on SIGTERM. */
export const DEBIAN_SANDBOX_COMMAND: [string, ...string[]] = [
  '/bin/sh',
  '-c',
  'trap "exit 0" TERM; while :; do sleep 1 & wait; done',
];

export interface AptTestImages {
  readonly dir: string;
  /** Debian 12 (mmdebstrap, variant apt) with vfleet-demo-tls and -broken 1.0-1, no sources. */
  readonly rootfs: string;
  /** The flat repository's folder (Packages, Release, the .debs). */
  readonly repo: string;
  readonly mirror: string;
  /** What the script printed: "apt test images up to date in …" when the cache was used. */
  readonly output: string;
}

let built: Promise<AptTestImages> | undefined;

/** Runs the script (cached after the first time) and names what it made. */
export function aptTestImages(dir = testImagesDir()): Promise<AptTestImages> {
  built ??= run('bash', [fromRoot('scripts/build-apt-test-images.sh'), '--out', dir], {
    maxBuffer: 16 * 1024 * 1024,
  }).then(({ stdout, stderr }) => {
    const manifest = JSON.parse(readFileSync(`${dir}/apt-manifest.json`, 'utf8')) as {
      rootfs: string;
      repo: string;
      mirror: string;
    };
    return {
      dir,
      rootfs: `${dir}/${manifest.rootfs}`,
      repo: `${dir}/${manifest.repo}`,
      mirror: manifest.mirror,
      output: stdout + stderr,
    };
  });
  return built;
}

/** The demo repository served over HTTP on 127.0.0.1, with every request it got. */
export interface AptRepoServer {
  /** `http://127.0.0.1:<port>/` */
  readonly url: string;
  /** The paths asked for, in order ("/Packages", "/vfleet-demo-tls_1.0-2_all.deb", …). */
  readonly requests: string[];
  stop(): Promise<void>;
}

/** Serves the repository's files (GET, HEAD; nothing outside the folder, no listing). */
export async function serveAptRepo(repo: string): Promise<AptRepoServer> {
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    requests.push(path);
    const name = path.slice(1);
    // A flat repository: one folder, file names of the characters dpkg-deb and apt use.
    if (
      !/^[A-Za-z0-9][A-Za-z0-9._+~-]*$/.test(name) ||
      (req.method !== 'GET' && req.method !== 'HEAD')
    ) {
      res.writeHead(404).end();
      return;
    }
    let body: Buffer;
    try {
      body = readFileSync(`${repo}/${name}`);
    } catch {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, {
      'content-length': body.length,
      'content-type': 'application/octet-stream',
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return {
    url: `http://127.0.0.1:${address.port}/`,
    requests,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * A copy of the rootfs tarball, in `dir`, with one file appended:
 * /etc/apt/sources.list.d/vfleet-demo.list naming `url` (`deb [trusted=yes] <url> ./`). The
 * port is known only once the server listens, so each test run makes its own copy.
 */
export async function rootfsWithSource(
  images: AptTestImages,
  url: string,
  dir: string,
): Promise<string> {
  const tar = `${dir}/debian12-demo-rootfs.tar`;
  copyFileSync(images.rootfs, tar);
  const extra = `${dir}/rootfs-extra`;
  mkdirSync(`${extra}/etc/apt/sources.list.d`, { recursive: true });
  writeFileSync(
    `${extra}/etc/apt/sources.list.d/vfleet-demo.list`,
    `deb [trusted=yes] ${url} ./\n`,
    { mode: 0o644 },
  );
  await run('tar', [
    '--owner=0',
    '--group=0',
    '--numeric-owner',
    '-rf',
    tar,
    '-C',
    extra,
    './etc/apt/sources.list.d/vfleet-demo.list',
  ]);
  return tar;
}

/** The versions dpkg reports installed in a rootfs, for the given packages (absent: not installed). */
export async function dpkgVersions(
  rootfs: string,
  packages: readonly string[],
): Promise<Record<string, string>> {
  const { stdout } = await run('dpkg-query', [
    `--admindir=${rootfs}/var/lib/dpkg`,
    '-W',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's format, not a template
    '-f=${db:Status-Status}\\t${Package}\\t${Version}\\n',
    ...packages,
  ]).catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? '' }));
  const found: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const [status, name, version] = line.split('\t');
    if (status === 'installed' && name && version) found[name] = version;
  }
  return found;
}

/** dpkg's status word for a package in a rootfs (installed, half-configured, …), or undefined. */
export async function dpkgStatus(rootfs: string, name: string): Promise<string | undefined> {
  const { stdout } = await run('dpkg-query', [
    `--admindir=${rootfs}/var/lib/dpkg`,
    '-W',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's format, not a template
    '-f=${db:Status-Status}',
    name,
  ]).catch(() => ({ stdout: '' }));
  return stdout.trim() || undefined;
}
