// The images of scripts/build-apt-test-images.sh keep the contract its header gives: cached (a
// second run only says so), the manifest's hashes are the files', the rootfs is Debian 12 with its
// own dpkg and apt, the demo packages at 1.0-1 and no apt sources, and the repository indexes the
// demo packages it holds. The first run builds from Debian's archive: when it cannot be reached,
// this fails (docs/patching.md).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { aptTestImages } from '../helpers/apt-test-images.js';
import { fromRoot } from '../helpers/paths.js';
import { testImagesDir } from '../helpers/test-images.js';

const run = promisify(execFile);

function sha256Of(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(path)
      .on('data', (c) => hash.update(c))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}

describe('scripts/build-apt-test-images.sh', () => {
  it('builds once, then says it is up to date; the manifest hashes the files', async () => {
    const images = await aptTestImages();
    const again = await run('bash', [
      fromRoot('scripts/build-apt-test-images.sh'),
      '--out',
      testImagesDir(),
    ]);
    assert.match(again.stdout, /^apt test images up to date in /);
    const manifest = JSON.parse(readFileSync(`${images.dir}/apt-manifest.json`, 'utf8')) as {
      files: Record<string, string>;
      mirror: string;
    };
    for (const [file, sha] of Object.entries(manifest.files)) {
      assert.equal(await sha256Of(`${images.dir}/${file}`), sha, file);
    }
    assert.match(manifest.mirror, /^https?:\/\//);
  });

  it('the rootfs is Debian 12 with its own dpkg and apt, the demo packages, and no apt sources', async () => {
    const images = await aptTestImages();
    const { stdout: listing } = await run('tar', ['-tf', images.rootfs], {
      maxBuffer: 64 * 1024 * 1024,
    });
    const files = new Set(listing.split('\n'));
    for (const f of ['./usr/bin/apt-get', './usr/bin/dpkg', './usr/bin/dpkg-query', './bin/sh']) {
      assert.ok(files.has(f) || files.has(f.replace('./bin/', './usr/bin/')), f);
    }
    assert.deepEqual(
      [...files].filter((f) => /^\.\/etc\/apt\/sources\.list(\.d\/.+)?$/.test(f)),
      [],
      'no apt sources',
    );
    const read = async (member: string) =>
      (await run('tar', ['-xOf', images.rootfs, member], { maxBuffer: 16 * 1024 * 1024 })).stdout;
    assert.match(await read('./usr/lib/os-release'), /^VERSION_ID="12"$/m);
    const status = await read('./var/lib/dpkg/status');
    for (const name of ['vfleet-demo-tls', 'vfleet-demo-broken']) {
      assert.match(
        status,
        new RegExp(
          `^Package: ${name}\\nStatus: install ok installed\\n(?:.+\\n)*?Version: 1\\.0-1$`,
          'm',
        ),
        name,
      );
    }
    assert.match(
      await read('./etc/vfleet-demo/vfleet-demo-tls.conf'),
      /# a local change, as an operator would make/,
    );
  });

  it('the repository indexes every demo package it holds, as dpkg-deb reads them', async () => {
    const images = await aptTestImages();
    const debs = readdirSync(images.repo)
      .filter((f) => f.endsWith('.deb'))
      .sort();
    assert.deepEqual(debs, [
      'vfleet-demo-broken_1.0-1_all.deb',
      'vfleet-demo-broken_1.0-2_all.deb',
      'vfleet-demo-lib_1.0-1_all.deb',
      'vfleet-demo-tls_1.0-1_all.deb',
      'vfleet-demo-tls_1.0-2_all.deb',
      'vfleet-demo-tls_1.0-3_all.deb',
    ]);
    const packages = readFileSync(`${images.repo}/Packages`, 'utf8');
    const indexed = [...packages.matchAll(/^Package: (\S+)\n(?:.+\n)*?Version: (\S+)$/gm)]
      .map((m) => `${m[1]}_${m[2]}_all.deb`)
      .sort();
    assert.deepEqual(indexed, debs);
    for (const deb of debs) {
      const { stdout } = await run('dpkg-deb', [
        '-f',
        `${images.repo}/${deb}`,
        'Package',
        'Version',
      ]);
      const [, name, version] = /^Package: (\S+)\nVersion: (\S+)\n$/.exec(stdout) ?? [];
      assert.equal(`${name}_${version}_all.deb`, deb);
    }
    assert.match(readFileSync(`${images.repo}/Release`, 'utf8'), /^Origin: vfleet-demo$/m);
  });
});
