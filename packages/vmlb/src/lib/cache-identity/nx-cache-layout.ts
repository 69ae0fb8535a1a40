import * as path from 'node:path';

/**
 * Where a task's outputs sit in Nx's local cache directory, as vmlb reads
 * them (the `layers` table, `--verify`'s advice), and where vmlb keeps
 * `# noshare` layers beside them (see local-layer-store).
 *
 *   <cacheDir>/<task hash>/<workspace-relative output paths>   Nx's entry
 *   <cacheDir>/vmlb-noshare/<task hash>/                       a noshare layer
 */
export const NOSHARE_STORE_FOLDER = 'vmlb-noshare';

/** A noshare entry's layer file (see noshareEntryFiles). */
export const NOSHARE_LAYER_FILE = 'layer';

const TASK_HASH_PATTERN = /^[A-Za-z0-9_-]{1,128}$/;

/** Whether `text` can be a task hash, and so a path segment: letters, digits, - and _ only. */
export function isTaskHash(text: string): boolean {
  return TASK_HASH_PATTERN.test(text);
}

/** Nx's entry for the task that ran under `taskHash`. */
export function nxCacheEntryDir(nxCacheDir: string, taskHash: string): string {
  return path.join(nxCacheDir, checked(taskHash));
}

/** vmlb's store of noshare layers inside Nx's cache directory. */
export function noshareStoreDir(nxCacheDir: string): string {
  return path.join(nxCacheDir, NOSHARE_STORE_FOLDER);
}

/** The noshare store's entry for the layer built under `taskHash`. */
export function noshareEntryDir(nxCacheDir: string, taskHash: string): string {
  return path.join(noshareStoreDir(nxCacheDir), checked(taskHash));
}

/** The files of one noshare store entry (or of its staging folder): the layer, its digest, its manifest and the entry's record. */
export function noshareEntryFiles(entryDir: string): { layer: string; digest: string; manifest: string; record: string } {
  return {
    /** The qcow2 (in blob mode: its ref). */
    layer: path.join(entryDir, NOSHARE_LAYER_FILE),
    digest: path.join(entryDir, 'layer.digest'),
    manifest: path.join(entryDir, 'layer.manifest.json'),
    /** entry.json: what the entry holds; its modification time is when the entry was last used. */
    record: path.join(entryDir, 'entry.json'),
  };
}

function checked(taskHash: string): string {
  if (!isTaskHash(taskHash)) throw new Error(`'${taskHash}' is not a task hash (letters, digits, - and _ only).`);
  return taskHash;
}
