import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { FolderLock } from './dist-lock';
import type { CacheMountHint } from '../image/cache-and-secret-hints';
import { resolveInRoot } from '../disk/root-path';
import { writeFileAtomic } from '../util/atomic-file';
import type { Log } from '../util/log';
import { formatBytes, parseSize } from '../util/units';

/**
 * This machine's cache mounts (`# cache-mount`): one folder per id, bound
 * read-write into each build-layer script that names it, kept across
 * layers, builds and images, and never part of a layer, its manifest or
 * its key.
 *
 *   <Nx cacheDir>/vmlb-cache-mounts/        0700: what scripts put here is the host's only to root
 *     <id>/                                 what the script sees at the hint's path
 *     .vmlb/<id>.lock/                      flock(2) target: one script at a time per cache
 *     .vmlb/<id>.json                       its last use (when, which image and layer)
 *
 * The lock is a folder of its own, out of the scripts' reach (a script that
 * flocks its cache folder cannot deadlock its own build) and never removed
 * (gc removes a cache under its lock, and a build waiting on that lock
 * must find the same one afterwards).
 */

export const CACHE_MOUNTS_FOLDER = 'vmlb-cache-mounts';
/** Overrides where the cache mounts live (e.g. a folder a CI system keeps between jobs). */
export const CACHE_MOUNTS_DIR_ENV = 'VMLB_CACHE_MOUNTS_DIR';
/** The size gc trims the cache mounts to, unless its option says otherwise. */
export const CACHE_MOUNTS_MAX_SIZE_ENV = 'VMLB_CACHE_MOUNTS_MAX_SIZE';
export const DEFAULT_CACHE_MOUNTS_MAX_SIZE = '10G';
const RECORDS = '.vmlb';

/** A cache folder's last use, as its record says. */
export interface CacheMountRecord {
  id: string;
  target: string;
  image: string;
  layer: string;
  /** ISO 8601. */
  lastUsed: string;
}

/** One cache as gc sees it. */
export interface CacheMountEntry {
  id: string;
  dir: string;
  /** Bytes on disk (allocated blocks), each inode counted once. */
  size: number;
  /** Milliseconds since the epoch; the record's time, else the folder's modification time. */
  lastUsed: number;
  record?: CacheMountRecord;
}

/** Where the cache mounts live: VMLB_CACHE_MOUNTS_DIR, else `vmlb-cache-mounts` in Nx's cache directory (so `nx reset` clears them too). */
export function cacheMountsRoot(nxCacheDir: string, env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(env[CACHE_MOUNTS_DIR_ENV] || path.join(nxCacheDir, CACHE_MOUNTS_FOLDER));
}

/** gc's cap in bytes: its option, else VMLB_CACHE_MOUNTS_MAX_SIZE, else 10 GiB; `0` empties every cache not in use. */
export function cacheMountsMaxSize(option: string | undefined, env: NodeJS.ProcessEnv = process.env): number {
  const [text, source] =
    option !== undefined
      ? [option, '--cacheMountsMaxSize']
      : env[CACHE_MOUNTS_MAX_SIZE_ENV]
        ? [env[CACHE_MOUNTS_MAX_SIZE_ENV] as string, CACHE_MOUNTS_MAX_SIZE_ENV]
        : [DEFAULT_CACHE_MOUNTS_MAX_SIZE, 'the default'];
  const bytes = text.trim() === '0' ? 0 : parseSize(text.trim());
  if (bytes === undefined) throw new Error(`${source} '${text}' is not a size; use e.g. 10G, 500M or 0.`);
  return bytes;
}

/** The caches a layer's script is using: where each is on the host, and the locks to let go of when it is done. */
export interface HeldCacheMounts {
  mounts: Array<{ source: string; target: string }>;
  release(): void;
}

export class CacheMountStore {
  constructor(readonly root: string) {}

  /** The host folder of a cache. */
  dir(id: string): string {
    return path.join(this.root, id);
  }

  /**
   * Locks each cache a layer names (in id order, so two builds never wait
   * on each other), records the use and returns their host folders. Another
   * build's script using one is waited for, saying so.
   */
  async acquire(hints: CacheMountHint[], user: { image: string; layer: string }, options: { log: Log; signal?: AbortSignal }): Promise<HeldCacheMounts> {
    this.ensureRoot();
    const locks: FolderLock[] = [];
    const release = () => locks.splice(0).forEach((lock) => lock.release());
    try {
      for (const hint of [...hints].sort((a, b) => a.id.localeCompare(b.id))) {
        const lockDir = this.lockDir(hint.id);
        const holder = () => this.readRecord(hint.id);
        const onWait = () => {
          const other = holder();
          options.log(`vmlb: waiting for cache mount ${hint.id}, which another build's script is using${other ? ` (${other.image} ${other.layer})` : ''}...`);
        };
        locks.push(await FolderLock.acquire(lockDir, { signal: options.signal, onWait }));
        mkdirSync(this.dir(hint.id), { mode: 0o755, recursive: true });
        await this.writeRecord({ id: hint.id, target: hint.target, image: user.image, layer: user.layer, lastUsed: new Date().toISOString() });
      }
    } catch (error) {
      release();
      throw error;
    }
    return { mounts: hints.map((hint) => ({ source: this.dir(hint.id), target: hint.target })), release };
  }

  /** Every cache on this machine, with its size and last use. */
  list(): CacheMountEntry[] {
    if (!existsSync(this.root)) return [];
    return readdirSync(this.root, { withFileTypes: true })
      .filter((entry) => entry.isDirectory() && entry.name !== RECORDS)
      .map((entry) => {
        const dir = this.dir(entry.name);
        const record = this.readRecord(entry.name);
        const recorded = record ? Date.parse(record.lastUsed) : NaN;
        return { id: entry.name, dir, size: diskUsage(dir), lastUsed: Number.isNaN(recorded) ? statSync(dir).mtimeMs : recorded, record };
      });
  }

  /** Removes a cache unless a build's script is using it; false when one is. */
  remove(id: string): boolean {
    const lock = FolderLock.tryAcquire(this.lockDir(id));
    if (!lock) return false;
    try {
      rmSync(this.dir(id), { recursive: true, force: true });
      rmSync(this.recordFile(id), { force: true });
      return true;
    } finally {
      lock.release();
    }
  }

  private ensureRoot(): void {
    mkdirSync(path.join(this.root, RECORDS), { recursive: true, mode: 0o700 });
    // Scripts write here as root (setuid files included): no other user of this host may reach them.
    chmodSync(this.root, 0o700);
  }

  private lockDir(id: string): string {
    return path.join(this.root, RECORDS, `${id}.lock`);
  }

  private recordFile(id: string): string {
    return path.join(this.root, RECORDS, `${id}.json`);
  }

  private readRecord(id: string): CacheMountRecord | undefined {
    try {
      return JSON.parse(readFileSync(this.recordFile(id), 'utf8')) as CacheMountRecord;
    } catch {
      return undefined;
    }
  }

  private async writeRecord(record: CacheMountRecord): Promise<void> {
    await writeFileAtomic(this.recordFile(record.id), `${JSON.stringify(record, null, 2)}\n`, { sync: false });
  }
}

/** Allocated bytes under a folder, never following a symlink (scripts put anything there), each inode once. */
function diskUsage(dir: string): number {
  const seen = new Set<number>();
  let bytes = 0;
  const pending = [dir];
  while (pending.length) {
    const folder = pending.pop() as string;
    let names: string[];
    try {
      names = readdirSync(folder);
    } catch {
      continue;
    }
    for (const name of names) {
      const file = path.join(folder, name);
      let stats;
      try {
        stats = lstatSync(file);
      } catch {
        continue;
      }
      if (stats.isDirectory()) pending.push(file);
      if (seen.has(stats.ino)) continue;
      seen.add(stats.ino);
      bytes += stats.blocks * 512;
    }
  }
  return bytes;
}

/** What trimming did: caches removed, those a build was using (kept), and the total before and after. */
export interface TrimReport {
  /** How many caches there were. */
  caches: number;
  removed: CacheMountEntry[];
  busy: CacheMountEntry[];
  before: number;
  after: number;
}

/** Removes caches, least recently used first, until the rest fit in `maxSize`; a cache a script is using stays. */
export function trimCacheMounts(store: CacheMountStore, maxSize: number, options: { dryRun?: boolean } = {}): TrimReport {
  const entries = store.list().sort((a, b) => a.lastUsed - b.lastUsed);
  const before = entries.reduce((sum, entry) => sum + entry.size, 0);
  const report: TrimReport = { caches: entries.length, removed: [], busy: [], before, after: before };
  for (const entry of entries) {
    if (report.after <= maxSize) break;
    if (options.dryRun || store.remove(entry.id)) {
      report.removed.push(entry);
      report.after -= entry.size;
    } else report.busy.push(entry);
  }
  return report;
}

/** One line for gc's output. */
export function describeTrim(store: CacheMountStore, maxSize: number, report: TrimReport, dryRun: boolean): string {
  const verb = dryRun ? 'would remove' : 'removed';
  const removed = report.removed.length
    ? `${verb} ${report.removed.map((entry) => `${entry.id} (${formatBytes(entry.size)})`).join(', ')}`
    : 'nothing to remove';
  const busy = report.busy.length ? `; in use by a build, kept: ${report.busy.map((entry) => entry.id).join(', ')}` : '';
  return `vmlb: cache mounts ${store.root}: ${formatBytes(report.before)} in ${report.caches} caches, cap ${formatBytes(maxSize)}; ${removed}${busy}; ${formatBytes(report.after)} left`;
}

/** A cache mount's path in the image must be a folder there, or not exist yet (it is made for the script and taken away after). */
export function cacheMountTargetProblem(root: string, hint: CacheMountHint): string | undefined {
  const hostPath = resolveInRoot(root, hint.target);
  if (!existsSync(hostPath) || statSync(hostPath).isDirectory()) return undefined;
  return `# cache-mount ${hint.target}: ${hint.target} is a file in the image, not a folder. Mount the cache at a folder (the one the tool writes its cache files into).`;
}
