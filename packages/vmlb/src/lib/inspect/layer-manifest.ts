import { readFileSync } from 'node:fs';
import { type BuildRecord, isBuildRecord } from '../cache-identity/build-record';
import { writeFileAtomic } from '../util/atomic-file';
import { type PackageChanges, diffPackages } from './dpkg-status';
import { type Entry, type FileState, comparePaths, entryOf, hasChanged } from './file-entries';
import type { RootSnapshot } from './root-snapshot';

/**
 * A layer's manifest: what its script changed in the image's root (files,
 * and packages when the image has dpkg), made from two root snapshots; its
 * one-line summary; and the manifest file written beside the layer.
 */

export interface LayerManifest {
  version: 1;
  files: {
    added: Entry[];
    modified: Entry[];
    removed: Entry[];
    counts: { added: number; modified: number; removed: number };
    truncated: boolean;
  };
  packages?: PackageChanges;
}

export const DEFAULT_MAX_ENTRIES = 1000;

/**
 * What changed from `before` to `after`. A path is modified when its size,
 * mtime, inode (a file replaced by rename), mode, owner or link target
 * differ, except that a folder's size and mtime are ignored: they change
 * whenever an entry is added to or removed from it, which the manifest
 * already lists. Lists are sorted by path ('/' first, so a folder's contents
 * follow it) and each capped at `maxEntries`; counts are always exact.
 */
export function diffSnapshots(before: RootSnapshot, after: RootSnapshot, options: { maxEntries?: number } = {}): LayerManifest {
  const maxEntries = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
  if (!Number.isSafeInteger(maxEntries) || maxEntries < 0) throw new RangeError(`maxEntries must be a whole number >= 0, not ${maxEntries}.`);
  const manifest: LayerManifest = { version: 1, files: diffFiles(before.files, after.files, maxEntries) };
  if (before.packageManager || after.packageManager) manifest.packages = diffPackages(before, after);
  return manifest;
}

function diffFiles(before: Map<string, FileState>, after: Map<string, FileState>, maxEntries: number): LayerManifest['files'] {
  const added: Entry[] = [];
  const modified: Entry[] = [];
  const removed: Entry[] = [];
  for (const [filePath, state] of after) {
    const previous = before.get(filePath);
    if (!previous) added.push(entryOf(filePath, state));
    else if (hasChanged(previous, state)) modified.push(entryOf(filePath, state));
  }
  for (const [filePath, state] of before) {
    if (!after.has(filePath)) removed.push(entryOf(filePath, state));
  }
  const counts = { added: added.length, modified: modified.length, removed: removed.length };
  const truncated = Math.max(counts.added, counts.modified, counts.removed) > maxEntries;
  return {
    added: firstByPath(added, maxEntries),
    modified: firstByPath(modified, maxEntries),
    removed: firstByPath(removed, maxEntries),
    counts,
    truncated,
  };
}

function firstByPath(entries: Entry[], maxEntries: number): Entry[] {
  return entries.sort((a, b) => comparePaths(a.path, b.path)).slice(0, maxEntries);
}

/** One line for tables: "+12 ~3 -1 files, +2 packages ~1 upgraded"; zero parts left out; "no changes" when empty. */
export function summarizeManifest(manifest: LayerManifest): string {
  const { counts } = manifest.files;
  const parts: string[] = [];
  const files = signedCounts([
    ['+', counts.added],
    ['~', counts.modified],
    ['-', counts.removed],
  ]);
  if (files) parts.push(`${files} files`);
  const packages = manifest.packages;
  if (packages) {
    const changed = signedCounts([
      ['+', packages.installed.length],
      ['-', packages.removed.length],
    ]);
    const upgraded = packages.upgraded.length;
    if (changed && upgraded) parts.push(`${changed} packages ~${upgraded} upgraded`);
    else if (changed) parts.push(`${changed} packages`);
    else if (upgraded) parts.push(`~${upgraded} packages upgraded`);
  }
  return parts.length ? parts.join(', ') : 'no changes';
}

function signedCounts(counts: Array<[sign: string, count: number]>): string {
  return counts
    .filter(([, count]) => count > 0)
    .map(([sign, count]) => `${sign}${count}`)
    .join(' ');
}
/**
 * A manifest file (`<layer>.manifest.json`) as written beside a layer: the
 * layer's kind, what it changed (`files` null when there is no file list: a
 * base, a modify-disk layer) and the record of its build.
 */
export interface ManifestFile {
  kind?: string;
  version?: 1;
  files?: LayerManifest['files'] | null;
  packages?: LayerManifest['packages'];
  /** build-layer: how long listing the root took, and how each listing was made. */
  snapshotMs?: number;
  snapshotMethod?: { before: 'stored' | 'walk'; after: 'inode-tables' | 'walk' };
  build?: BuildRecord;
}

/** The manifest of a layer with no file list (a base, a modify-disk layer): its kind and build record. */
export function manifestWithoutFiles(kind: string, build: BuildRecord): ManifestFile {
  return { kind, version: 1, files: null, build };
}

/** The manifest in `file`, or undefined when it is missing or unreadable; a build record that is not one is left out. */
export function readManifest(file: string): ManifestFile | undefined {
  try {
    const manifest = JSON.parse(readFileSync(file, 'utf8')) as ManifestFile;
    if (manifest.build !== undefined && !isBuildRecord(manifest.build)) delete manifest.build;
    return manifest;
  } catch {
    return undefined;
  }
}

/** Writes a manifest file atomically, as indented JSON and a final newline. */
export async function writeManifest(file: string, manifest: ManifestFile): Promise<void> {
  await writeFileAtomic(file, `${JSON.stringify(manifest, null, 2)}\n`);
}
