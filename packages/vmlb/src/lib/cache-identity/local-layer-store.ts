import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { isDigest, readDigest, writeDigest } from './digest';
import { isTaskHash, noshareEntryFiles, noshareStoreDir } from './nx-cache-layout';
import { digestPathFor } from '../image/dist-layout';
import type { ScriptHints } from '../image/hints';

/**
 * This machine's store for `# noshare` layers.
 *
 * Nx has no switch to keep one cacheable task out of its remote cache, so a
 * noshare layer is not an Nx-cacheable task at all; its executor keeps the
 * built overlay here instead, keyed by the Nx task hash (which Nx computes
 * from the same inputs as for a cacheable task, and passes in NX_TASK_HASH).
 * The store sits inside Nx's cache directory, so it follows
 * `cacheDirectory` / NX_CACHE_DIRECTORY and `nx reset` clears it with the
 * rest of the local cache.
 *
 *   <cacheDir>/vmlb-noshare/<task hash>/layer         the qcow2 (in blob mode: its ref)
 *                                       layer.digest
 *                                       layer.manifest.json
 *                                       entry.json
 *
 * (the names are nx-cache-layout's noshareEntryFiles).
 *
 * Entries appear by rename of a complete folder, so a reader never sees half
 * of one; files are copied in and out (reflinked where the filesystem can),
 * so nothing done to dist/ can change a stored layer.
 */

/** A layer's files in dist/: the qcow2 (in blob mode its ref) and the digest. */
export interface LayerFiles {
  file: string;
  digestFile: string;
  /** The layer's manifest, kept with it when given. */
  manifestFile?: string;
}

export interface LocalStoreEntry {
  /** Nx project of the layer, e.g. `prod-20_packages`. */
  project: string;
  /** Chain digest of the stored overlay. */
  digest: string;
  /** Chain digest of the parent it was built on; a restore checks it against the parent in dist/. */
  parentDigest: string;
  /** Size of the stored file in bytes. */
  size: number;
  /** When it was stored (ISO 8601). */
  storedAt: string;
}

export type RestoreOutcome =
  /** dist/ already holds this entry's overlay; nothing was copied. */
  | 'up-to-date'
  /** The overlay was copied from the store into dist/. */
  | 'restored'
  /** The store has no usable entry for the key. */
  | 'miss';

/** Entries kept per layer project; older ones are removed when a new one is stored. */
export const DEFAULT_ENTRIES_PER_LAYER = 5;

export class LocalLayerStore {
  constructor(
    readonly root: string,
    private readonly entriesPerLayer: number = DEFAULT_ENTRIES_PER_LAYER,
  ) {}

  /** The store of a workspace whose Nx cache directory is `nxCacheDir`. */
  static inNxCacheDir(nxCacheDir: string): LocalLayerStore {
    return new LocalLayerStore(noshareStoreDir(nxCacheDir));
  }

  /**
   * Puts the entry for `key` in place as `output` (+ its digest file) when
   * the store has one built on `parentDigest`. A damaged or mismatching
   * entry is removed and reported as a miss: the caller builds instead.
   */
  async restore(key: string, layer: LayerFiles, parentDigest: string): Promise<{ outcome: RestoreOutcome; entry?: LocalStoreEntry }> {
    const { file: output, digestFile: digestPath } = layer;
    const dir = this.entryDir(key);
    const entry = await this.readEntry(dir);
    if (!entry) return { outcome: 'miss' };
    const files = noshareEntryFiles(dir);
    const stored = files.layer;
    const storedSize = await fileSize(stored);
    if (entry.parentDigest !== parentDigest || storedSize !== entry.size) {
      await fs.rm(dir, { recursive: true, force: true });
      return { outcome: 'miss' };
    }
    const now = new Date();
    // The modification time of entry.json orders entries by last use for eviction.
    await fs.utimes(files.record, now, now).catch(() => undefined);

    if ((await readDigest(digestPath).catch(() => undefined)) === entry.digest && (await fileSize(output)) === entry.size) {
      return { outcome: 'up-to-date', entry };
    }
    const partial = path.join(path.dirname(output), `.${path.basename(output)}.${process.pid}.restore`);
    try {
      await fs.copyFile(stored, partial, fsConstants.COPYFILE_FICLONE);
      await fs.rm(digestPath, { force: true });
      await fs.rename(partial, output);
    } finally {
      await fs.rm(partial, { force: true });
    }
    if (layer.manifestFile) await this.restoreManifest(dir, layer.manifestFile);
    await writeDigest(digestPath, entry.digest);
    return { outcome: 'restored', entry };
  }

  /** Stores a freshly built layer's files under `key`. */
  async save(key: string, project: string, layer: LayerFiles, parentDigest: string): Promise<LocalStoreEntry> {
    const { file: output, digestFile } = layer;
    const dir = this.entryDir(key);
    const digest = await readDigest(digestFile);
    const entry: LocalStoreEntry = { project, digest, parentDigest, size: (await fs.stat(output)).size, storedAt: new Date().toISOString() };
    await fs.mkdir(this.root, { recursive: true });
    const staging = path.join(this.root, `.${key}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
    try {
      await fs.mkdir(staging);
      const staged = noshareEntryFiles(staging);
      await fs.copyFile(output, staged.layer, fsConstants.COPYFILE_FICLONE);
      await writeDigest(staged.digest, digest);
      if (layer.manifestFile) await fs.copyFile(layer.manifestFile, staged.manifest).catch(ignoreMissing);
      await fs.writeFile(staged.record, `${JSON.stringify(entry, null, 2)}\n`);
      await fs.rm(dir, { recursive: true, force: true });
      await fs.rename(staging, dir);
    } finally {
      await fs.rm(staging, { recursive: true, force: true });
    }
    await this.evictOlderEntries(project, key);
    return entry;
  }

  /** Every complete entry, newest use first. */
  async entries(): Promise<Array<LocalStoreEntry & { key: string; lastUsed: number }>> {
    let names: string[];
    try {
      names = await fs.readdir(this.root);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    const found = [];
    for (const key of names.filter(isTaskHash)) {
      const dir = path.join(this.root, key);
      const entry = await this.readEntry(dir);
      if (!entry) continue;
      const lastUsed = (await fs.stat(noshareEntryFiles(dir).record)).mtimeMs;
      found.push({ ...entry, key, lastUsed });
    }
    return found.sort((a, b) => b.lastUsed - a.lastUsed);
  }

  private async evictOlderEntries(project: string, keep: string): Promise<void> {
    const ofProject = (await this.entries()).filter((entry) => entry.project === project && entry.key !== keep);
    for (const stale of ofProject.slice(Math.max(0, this.entriesPerLayer - 1))) {
      await fs.rm(this.entryDir(stale.key), { recursive: true, force: true });
    }
  }

  private async restoreManifest(dir: string, manifestFile: string): Promise<void> {
    await fs.rm(manifestFile, { force: true });
    const partial = path.join(path.dirname(manifestFile), `.${path.basename(manifestFile)}.${process.pid}.restore`);
    try {
      await fs.copyFile(noshareEntryFiles(dir).manifest, partial);
      await fs.rename(partial, manifestFile);
    } catch (error) {
      ignoreMissing(error);
    } finally {
      await fs.rm(partial, { force: true });
    }
  }

  private entryDir(key: string): string {
    if (!isTaskHash(key)) throw new Error(`Local layer store: '${key}' is not a task hash (letters, digits, - and _ only).`);
    return path.join(this.root, key);
  }

  private async readEntry(dir: string): Promise<LocalStoreEntry | undefined> {
    try {
      const entry = JSON.parse(await fs.readFile(noshareEntryFiles(dir).record, 'utf8')) as LocalStoreEntry;
      return isDigest(entry.digest) && isDigest(entry.parentDigest) && Number.isSafeInteger(entry.size) ? entry : undefined;
    } catch {
      return undefined;
    }
  }
}

/** Entries stored before manifests existed have none; a missing manifest is not an error. */
function ignoreMissing(error: unknown): void {
  if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
}

async function fileSize(file: string): Promise<number | undefined> {
  try {
    return (await fs.stat(file)).size;
  } catch {
    return undefined;
  }
}

/**
 * The key of a noshare layer in the local store: the task hash Nx computed
 * for it (noshare layers are not Nx-cacheable, but Nx hashes them from the
 * same inputs). None when the layer is nocache, is not noshare, or the run
 * skips caching (`--skip-nx-cache`, under which Nx computes no hash).
 */
export function noshareStoreKey(plan: { hints: Pick<ScriptHints, 'noshare' | 'nocache'> }, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (!plan.hints.noshare || plan.hints.nocache) return undefined;
  if (env.NX_SKIP_NX_CACHE === 'true') return undefined;
  return env.NX_TASK_HASH || undefined;
}

/**
 * Puts a noshare layer back from the store when its entry was built on the
 * parent that is in dist/ now. `stillComplete` checks what the entry needs
 * beyond its files (in blob mode: its blob on this machine). True when the
 * layer is in place and need not be built.
 */
export async function restoreNoshareLayer(
  store: LocalLayerStore,
  key: string,
  layer: { name: string; parent: string; files: LayerFiles },
  options: { log: (message: string) => void; stillComplete?: () => Promise<boolean> },
): Promise<boolean> {
  // Without its parent the entry cannot be checked; the build reports the missing parent.
  const parentDigest = await readDigest(digestPathFor(layer.parent)).catch(() => undefined);
  if (!parentDigest) return false;
  const { outcome, entry } = await store.restore(key, layer.files, parentDigest);
  if (outcome === 'miss' || !entry) return false;
  if (options.stillComplete && !(await options.stillComplete())) {
    options.log(`vmlb: ${layer.name} is noshare and its stored ref names a blob this machine no longer has; building it again`);
    return false;
  }
  options.log(
    `vmlb: ${layer.name} is noshare: ${outcome === 'restored' ? 'restored from' : 'already in dist/, matching'} this machine's layer store ` +
      `(task hash ${key}, digest ${entry.digest.slice(0, 12)}); not rebuilt, never uploaded`,
  );
  return true;
}
