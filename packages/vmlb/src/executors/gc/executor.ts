import * as fs from 'node:fs/promises';
import { cacheDir, type ExecutorContext } from '@nx/devkit';
import fg from 'fast-glob';
import { LocalBlobCache } from '../../lib/blob/local-cache';
import { blobModeSetting, blobStoreOptionFromNxJson } from '../../lib/blob/config';
import { CACHE_MOUNTS_FOLDER, CacheMountStore, cacheMountsMaxSize, cacheMountsRoot, describeTrim, trimCacheMounts } from '../../lib/build/cache-mounts';
import { isSha256 } from '../../lib/cache-identity/digest';
import { reportFailure } from '../../lib/util/executor-errors';
import { NOSHARE_LAYER_FILE, NOSHARE_STORE_FOLDER } from '../../lib/cache-identity/nx-cache-layout';
import { formatBytes } from '../../lib/util/units';
import type { GcExecutorSchema } from './schema';

/**
 * Every sha256 a ref in this workspace names: in dist/ (any image), in Nx's
 * local cache (refs of builds on other branches, restored without a build
 * when those branches come back) and in the noshare layer store.
 */
export async function referencedBlobs(workspaceRoot: string, nxCacheDir: string): Promise<Set<string>> {
  const refFiles = [
    ...(await fg('dist/**/*.ref', { cwd: workspaceRoot, absolute: true, dot: false, followSymbolicLinks: false })),
    ...(await fg(['*/**/*.ref', `${NOSHARE_STORE_FOLDER}/*/${NOSHARE_LAYER_FILE}`], {
      cwd: nxCacheDir,
      absolute: true,
      followSymbolicLinks: false,
      // What layer scripts left in their caches is not a ref.
      ignore: [`${CACHE_MOUNTS_FOLDER}/**`],
    })),
  ];
  const referenced = new Set<string>();
  for (const file of refFiles) {
    try {
      const { sha256 } = JSON.parse(await fs.readFile(file, 'utf8')) as { sha256?: unknown };
      if (typeof sha256 === 'string' && isSha256(sha256)) referenced.add(sha256);
    } catch {
      // Not a ref (an inline-mode noshare entry holds a qcow2): names no blob.
    }
  }
  return referenced;
}

/** Options resolved once, with `env` passed in: the blob cache's keep count, the cache mounts' folder and cap. */
export function normalizeOptions(options: GcExecutorSchema, workspaceRoot: string, env: NodeJS.ProcessEnv = process.env) {
  const keep = options.keep ?? 20;
  if (!Number.isInteger(keep) || keep < 0) throw new Error(`--keep must be a whole number of blobs (0 or more), got ${JSON.stringify(options.keep)}.`);
  return {
    keep,
    dryRun: options.dryRun ?? false,
    blobs: blobModeSetting(blobStoreOptionFromNxJson(workspaceRoot), env) !== undefined,
    cacheMounts: new CacheMountStore(cacheMountsRoot(cacheDir, env)),
    cacheMountsMaxSize: cacheMountsMaxSize(options.cacheMountsMaxSize, env),
  };
}

/** The cache mounts trimmed to their cap, then, in blob mode, the blob cache. */
export default async function gcExecutor(options: GcExecutorSchema, context: ExecutorContext): Promise<{ success: boolean }> {
  return reportFailure(async () => {
    const normalized = normalizeOptions(options, context.root);
    const report = trimCacheMounts(normalized.cacheMounts, normalized.cacheMountsMaxSize, { dryRun: normalized.dryRun });
    // In blob mode on a machine without cache mounts, only the blob cache is worth a line.
    if (report.caches || !normalized.blobs) console.log(describeTrim(normalized.cacheMounts, normalized.cacheMountsMaxSize, report, normalized.dryRun));
    if (normalized.blobs) await gcBlobs(normalized.keep, normalized.dryRun, context.root);
  });
}

/** Blob mode: unreferenced blobs beyond the `keep` most recently used leave this machine's blob cache. */
async function gcBlobs(keep: number, dryRun: boolean, workspaceRoot: string): Promise<void> {
  const cache = LocalBlobCache.fromEnvironment();
  const referenced = await referencedBlobs(workspaceRoot, cacheDir);
  const unreferenced = (await cache.list()).filter((blob) => !referenced.has(blob.sha256)).sort((a, b) => b.lastUsed - a.lastUsed);
  const removable = unreferenced.slice(keep);
  let freed = 0;
  let stillLinked = 0;
  for (const blob of removable) {
    // A blob still linked from some dist/ folder keeps its blocks until that link goes too.
    if (blob.links > 1) stillLinked += blob.size;
    else freed += blob.size;
    if (!dryRun) await cache.remove(blob.sha256);
  }
  console.log(
    `vmlb: blob cache ${cache.root}: ${referenced.size} blobs named by refs here, ${Math.min(keep, unreferenced.length)} other recent ones kept; ` +
      `${dryRun ? 'would remove' : 'removed'} ${removable.length} (${formatBytes(freed)} freed` +
      (stillLinked ? `, ${formatBytes(stillLinked)} more once dist/ folders that link them are gone` : '') +
      ')',
  );
  if (dryRun) removable.forEach((blob) => console.log(`  ${blob.sha256} ${formatBytes(blob.size)} last used ${new Date(blob.lastUsed).toISOString()}`));
}
