// Image files live on the machine that runs vfleet (absolute paths in EngineImage.source); a
// host gets each one once, content-addressed under `<dataDir>/images/<sha256>/<role>`. The
// folder's name is the file's sha256, checked on the host after the upload; a `.verified` file
// written after that check is what "present" means, so a big base disk is hashed on the host
// once, not at every create. An upload goes to a temporary name of its own (unique per call, not
// per process: one worker stages one image for many jobs at once, and several workers may stage
// it on one host) and is renamed into place, so creates staging the same image at once all end
// with the same complete file; the last rename wins, and each one puts a whole, checked file.
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { VfleetError } from '../../model/errors.js';
import { openRegularFileStream } from '../../transport/bounded-file.js';
import { LocalTransport } from '../../transport/local-transport.js';
import { temporaryPathFor } from '../../transport/temporary-name.js';
import { run, type Transport } from '../../transport/transport.js';
import { copyChecked, exists, mkdirs } from './host-commands.js';
import type { HostLayout } from './host-layout.js';

/** The role of a staged file is its name in the image folder. */
export type ImageRole = 'disk.qcow2' | 'vmlinuz' | 'initrd' | 'rootfs.tar';

export interface StagedFile {
  readonly path: string;
  readonly sha256: string;
}

/** The machine vfleet runs on, as a transport: image files are read through it. */
export const thisMachine = new LocalTransport('vfleet');

const hashes = new Map<string, { size: number; mtimeMs: number; sha256: string }>();

/** sha256 of a local file, remembered while its size and mtime stay the same. */
export async function localSha256(path: string): Promise<string> {
  // Opened and checked first: a FIFO or /dev/zero named as an image is refused, not hashed for ever.
  const { stream, size, mtimeMs } = await openRegularFileStream(path);
  const known = hashes.get(path);
  if (known && known.size === size && known.mtimeMs === mtimeMs) {
    stream.destroy();
    return known.sha256;
  }
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk as Buffer);
  const sha256 = hash.digest('hex');
  hashes.set(path, { size, mtimeMs, sha256 });
  return sha256;
}

export class ImageStager {
  constructor(
    private readonly t: Transport,
    private readonly layout: HostLayout,
  ) {}

  /** Puts a file of this machine on the host, unless the host has it already. */
  async stageLocal(localPath: string, role: ImageRole): Promise<StagedFile> {
    let sha256: string;
    try {
      sha256 = await localSha256(localPath);
    } catch (e) {
      throw new VfleetError(
        'image-missing',
        `cannot read the image file ${localPath} on the machine vfleet runs on: it ${(e as Error).message}`,
      );
    }
    return this.stage(sha256, role, thisMachine, localPath);
  }

  /** Puts a file another host has staged on this host (a move), unless it has it already. */
  async stageFrom(from: Transport, staged: StagedFile, role: ImageRole): Promise<StagedFile> {
    return this.stage(staged.sha256, role, from, staged.path);
  }

  /**
   * A rootfs given as a folder becomes a tar on this machine first (uncompressed, with fixed
   * owners, times and order, so the same folder gives the same sha256 and is staged once).
   */
  async stageFolder(localDir: string): Promise<StagedFile> {
    const work = await mkdtemp(`${tmpdir()}/vfleet-rootfs-`);
    try {
      const tar = `${work}/rootfs.tar`;
      await run(thisMachine, [
        'tar',
        '--sort=name',
        '--mtime=@0',
        '--owner=0',
        '--group=0',
        '--numeric-owner',
        '-cf',
        tar,
        '-C',
        localDir,
        '.',
      ]);
      hashes.delete(tar);
      return await this.stageLocal(tar, 'rootfs.tar');
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }

  private async stage(
    sha256: string,
    role: ImageRole,
    from: Transport,
    fromPath: string,
  ): Promise<StagedFile> {
    const dir = this.layout.imageDir(sha256);
    const path = `${dir}/${role}`;
    const verified = `${dir}/.verified-${role}`;
    if ((await exists(this.t, verified)) && (await exists(this.t, path))) return { path, sha256 };
    await mkdirs(this.t, dir);
    const partial = temporaryPathFor(path);
    try {
      await copyChecked(from, fromPath, this.t, partial, {
        expected: sha256,
        code: 'image-corrupt',
        what: `${this.t.host}: ${role}`,
        mode: 0o644,
      });
      await run(this.t, ['mv', '-f', '--', partial, path]);
      await this.t.writeFile(verified, `${sha256}\n`, 0o644);
    } finally {
      await this.t.exec(['rm', '-f', '--', partial]);
    }
    return { path, sha256 };
  }
}
