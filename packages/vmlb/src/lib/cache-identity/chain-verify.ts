import { existsSync, realpathSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { ROOT_DIGEST } from './digest';
import { readBuildRecord } from './build-record';
import { chainDigest, readDigest } from './digest';
import type { Log } from '../util/log';
import { digestPathFor, manifestPathFor } from '../image/dist-layout';
import { isTaskHash, noshareEntryDir, noshareEntryFiles, nxCacheEntryDir } from './nx-cache-layout';
import { backingChain } from '../disk/qcow2-info';
import { formatBytes, formatDuration } from '../util/units';

export interface VerifyChainOptions {
  imageName: string;
  /** File names in messages are relative to it. */
  workspaceRoot: string;
  log: Log;
  /** The command that builds the image, for the fix a failure names. */
  buildCommand: string;
  /** Nx's local cache directory: a failure names the entry that would restore the damaged file again. */
  nxCacheDir?: string;
}

export interface VerifiedLayer {
  /** Absolute path of the layer's qcow2. */
  file: string;
  digest: string;
  bytes: number;
}

/**
 * Reads every file of the chain that ends in `top`, base first, and checks
 * each against the digest written beside it when it was built: the chain
 * digest over its parent's digest and its own bytes. A layer file damaged
 * on disk, or restored damaged from a cache, has bytes its digest does not
 * describe; everything built on it, and every boot of it, would be wrong
 * without any error from qemu. Throws for the first file that does not
 * match, naming it and the fix. Writes nothing.
 */
export async function verifyChain(top: string, options: VerifyChainOptions): Promise<VerifiedLayer[]> {
  const { imageName, workspaceRoot, log } = options;
  const shown = (file: string) => path.relative(workspaceRoot, file);
  // Base first: each layer's expected digest builds on its parent's. Through
  // a link (image.qcow2) to the layer itself, whose digest sits beside it.
  const files = (await backingChain(realpathSync(top))).map((info) => info.filename).reverse();
  const started = Date.now();
  const verified: VerifiedLayer[] = [];
  let parentDigest = ROOT_DIGEST;
  for (const file of files) {
    const digestPath = digestPathFor(file);
    let recorded: string;
    try {
      recorded = await readDigest(digestPath);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      throw new Error(`Image ${imageName}: ${shown(file)} has no digest (${shown(digestPath)}), so it is not a finished layer. ${fixFor(file, options)}`);
    }
    const bytes = statSync(file).size;
    log(`vmlb: verifying ${shown(file)} (${formatBytes(bytes)})`);
    const actual = await chainDigest(parentDigest, file);
    if (actual !== recorded) {
      throw new Error(
        `Image ${imageName}: ${shown(file)} does not match its digest: ${shown(digestPath)} says ${recorded.slice(0, 12)}, ` +
          `its bytes${verified.length ? ` on top of ${path.basename(files[verified.length - 1])}` : ''} give ${actual.slice(0, 12)}. ` +
          `The file was damaged on disk, or restored damaged from a cache. ${fixFor(file, options)}`,
      );
    }
    verified.push({ file, digest: recorded, bytes });
    parentDigest = recorded;
  }
  const total = verified.reduce((sum, layer) => sum + layer.bytes, 0);
  log(
    `vmlb: image ${imageName}: all ${verified.length} files of the chain match their digests (${formatBytes(total)} read in ${formatDuration(Date.now() - started)})`,
  );
  return verified;
}

/**
 * How to get a sound copy of a layer file back. A cache hit would restore
 * the same bytes again when they came damaged from the cache (rebuilding
 * with --skip-nx-cache does not replace an entry), so an entry in the local
 * cache is removed first; a remote one is skipped for one run.
 */
function fixFor(file: string, options: VerifyChainOptions): string {
  const retry = `(add --skip-remote-cache if it comes back damaged from a remote cache)`;
  const entry = options.nxCacheDir ? localCacheEntryOf(file, options.nxCacheDir, options.workspaceRoot) : undefined;
  if (entry) {
    return `Nx's local cache has an entry for this build of it, which restores the same bytes again if that is where they came from: rm -rf ${entry}, then ${options.buildCommand} ${retry}.`;
  }
  const layerFiles = path.join(path.relative(options.workspaceRoot, path.dirname(file)), `${path.basename(file, '.qcow2')}.*`);
  return `Remove it (rm ${layerFiles}), then ${options.buildCommand} ${retry}.`;
}

/**
 * The local cache entry that holds the build of `file` recorded in its
 * manifest (by Nx task hash): Nx's own (`<cacheDir>/<hash>/`), or vmlb's
 * store for `# noshare` layers (`<cacheDir>/vmlb-noshare/<hash>/`).
 */
export function localCacheEntryOf(file: string, nxCacheDir: string, workspaceRoot: string): string | undefined {
  const taskHash = readBuildRecord(manifestPathFor(file))?.taskHash;
  // A hash is a path segment here: nothing but what Nx writes.
  if (!taskHash || !isTaskHash(taskHash)) return undefined;
  const nxEntry = nxCacheEntryDir(nxCacheDir, taskHash);
  if (existsSync(path.join(nxEntry, path.relative(workspaceRoot, file)))) return nxEntry;
  const noshareEntry = noshareEntryDir(nxCacheDir, taskHash);
  if (existsSync(noshareEntryFiles(noshareEntry).layer)) return noshareEntry;
  return undefined;
}
