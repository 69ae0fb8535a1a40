import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import * as fs from 'node:fs/promises';
import { homedir } from 'node:os';
import * as path from 'node:path';
import { isSha256 } from '../cache-identity/digest';

/**
 * This machine's content-addressed store of layer files, shared by every
 * workspace on it: `<root>/sha256/<hex>`, each file read-only and never
 * changed once there. dist/ holds hard links to these files (copies when
 * dist/ is on another filesystem), so putting a cached chain in place costs
 * one link per layer, whatever the layers weigh.
 *
 * A file's modification time records its last use (linking it into dist/ or
 * storing it), for garbage collection.
 */
export class LocalBlobCache {
  constructor(readonly root: string) {}

  /** `VMLB_BLOB_CACHE`, else `$XDG_CACHE_HOME/vmlb/blobs` (`~/.cache/vmlb/blobs`). */
  static fromEnvironment(env: NodeJS.ProcessEnv = process.env): LocalBlobCache {
    return new LocalBlobCache(env.VMLB_BLOB_CACHE || path.join(env.XDG_CACHE_HOME || path.join(homedir(), '.cache'), 'vmlb', 'blobs'));
  }

  pathOf(sha256: string): string {
    assertSha256(sha256);
    return path.join(this.root, 'sha256', sha256);
  }

  async has(sha256: string): Promise<boolean> {
    return (await statOrUndefined(this.pathOf(sha256))) !== undefined;
  }

  /** Where a download or copy into the cache is written before it is published. */
  async temporaryPath(sha256: string): Promise<string> {
    const dir = path.join(this.root, '.tmp');
    await fs.mkdir(dir, { recursive: true });
    return path.join(dir, `${sha256}.${process.pid}.${randomBytes(4).toString('hex')}`);
  }

  /**
   * Makes the finished file `source` (whose bytes have this sha256) the
   * cache's copy: renamed in when on the same filesystem, otherwise copied.
   * `source` is gone afterwards either way. An existing entry wins.
   */
  async adopt(sha256: string, source: string): Promise<string> {
    const target = this.pathOf(sha256);
    await fs.mkdir(path.dirname(target), { recursive: true });
    if (await this.has(sha256)) {
      await fs.rm(source, { force: true });
      await this.touch(sha256);
      return target;
    }
    let staged = source;
    if (!(await sameFilesystem(source, path.dirname(target)))) {
      staged = await this.temporaryPath(sha256);
      await fs.copyFile(source, staged, fsConstants.COPYFILE_FICLONE);
      await fs.rm(source, { force: true });
    }
    await fs.chmod(staged, 0o444);
    try {
      // link() never replaces: of two builds publishing the same blob, one wins, both are fine.
      await fs.link(staged, target);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    } finally {
      await fs.rm(staged, { force: true });
    }
    return target;
  }

  /**
   * Puts the cached blob at `destination` (replacing what is there):
   * a hard link, or a copy (reflinked where possible) across filesystems.
   * Returns how it was placed.
   */
  async placeAt(sha256: string, destination: string): Promise<'linked' | 'copied'> {
    const source = this.pathOf(sha256);
    const staged = path.join(path.dirname(destination), `.${path.basename(destination)}.${process.pid}.place`);
    await fs.rm(staged, { force: true });
    let how: 'linked' | 'copied' = 'linked';
    try {
      try {
        await fs.link(source, staged);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error;
        await fs.copyFile(source, staged, fsConstants.COPYFILE_FICLONE);
        await fs.chmod(staged, 0o444);
        how = 'copied';
      }
      await fs.rename(staged, destination);
    } finally {
      await fs.rm(staged, { force: true });
    }
    await this.touch(sha256);
    return how;
  }

  /** Records a use of the blob (for garbage collection). */
  async touch(sha256: string): Promise<void> {
    const now = new Date();
    await fs.utimes(this.pathOf(sha256), now, now).catch(() => undefined);
  }

  /** Every blob: its sha256, size, last use and how many names it has (links from dist/ folders count). */
  async list(): Promise<Array<{ sha256: string; size: number; lastUsed: number; links: number }>> {
    let names: string[];
    try {
      names = await fs.readdir(path.join(this.root, 'sha256'));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    const blobs = [];
    for (const name of names.filter((candidate) => isSha256(candidate))) {
      const stats = await statOrUndefined(this.pathOf(name));
      if (stats) blobs.push({ sha256: name, size: stats.size, lastUsed: stats.mtimeMs, links: stats.nlink });
    }
    return blobs;
  }

  async remove(sha256: string): Promise<void> {
    await fs.rm(this.pathOf(sha256), { force: true });
  }
}

export function assertSha256(sha256: string): void {
  if (!isSha256(sha256)) throw new Error(`'${sha256}' is not a sha256 (64 lower-case hex digits).`);
}

async function statOrUndefined(file: string) {
  try {
    return await fs.stat(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

async function sameFilesystem(file: string, dir: string): Promise<boolean> {
  const [a, b] = await Promise.all([fs.stat(file), fs.stat(dir)]);
  return a.dev === b.dev;
}
