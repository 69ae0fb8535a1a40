import { constants as fsConstants, createReadStream } from 'node:fs';
import * as path from 'node:path';
import { type Entry, type FileState, comparePaths } from './file-entries';
import { type LayerManifest, diffSnapshots } from './layer-manifest';
import type { RootSnapshot } from './root-snapshot';

/**
 * What differs between two mounted image roots, in the manner of
 * `virt-diff`: files added, removed and changed, each change saying what
 * changed (content, size, mode, owner, link target, type, mtime), and the
 * package changelog when the image has dpkg. Built on the same snapshots as
 * the per-layer manifest; file contents are read only where metadata cannot
 * tell (same size, different mtime or inode).
 */
export type ChangeKind = 'type' | 'content' | 'size' | 'link' | 'mode' | 'owner' | 'mtime';

export interface ChangedEntry extends Entry {
  changes: ChangeKind[];
  /** Modes in octal (permission bits and special bits), when the mode changed. */
  mode?: { from: string; to: string };
  owner?: { from: string; to: string };
  link?: { from: string; to: string };
  sizeBefore?: number;
}

export interface RootDiff {
  files: {
    added: Entry[];
    removed: Entry[];
    changed: ChangedEntry[];
  };
  packages?: LayerManifest['packages'];
}

export async function diffRoots(a: { root: string; snapshot: RootSnapshot }, b: { root: string; snapshot: RootSnapshot }): Promise<RootDiff> {
  // Uncapped: a diff lists everything; the counts of a manifest are not needed.
  const base = diffSnapshots(a.snapshot, b.snapshot, { maxEntries: Number.MAX_SAFE_INTEGER });
  const changed: ChangedEntry[] = [];
  for (const entry of base.files.modified) {
    const before = a.snapshot.files.get(entry.path)!;
    const after = b.snapshot.files.get(entry.path)!;
    const described = await describeChange(entry, before, after, a.root, b.root);
    if (described.changes.length) changed.push(described);
  }
  return {
    files: { added: base.files.added, removed: base.files.removed, changed: changed.sort((x, y) => comparePaths(x.path, y.path)) },
    ...(base.packages ? { packages: base.packages } : {}),
  };
}

async function describeChange(entry: Entry, before: FileState, after: FileState, rootA: string, rootB: string): Promise<ChangedEntry> {
  const changed: ChangedEntry = { ...entry, changes: [] };
  const typeBits = (mode: number) => mode & fsConstants.S_IFMT;
  if (typeBits(before.mode) !== typeBits(after.mode)) {
    changed.changes.push('type');
    return changed;
  }
  if (entry.type === 'file') {
    if (before.size !== after.size) {
      changed.changes.push('content', 'size');
      changed.sizeBefore = before.size;
    } else if (
      (before.mtimeMs !== after.mtimeMs || before.ino !== after.ino) &&
      !(await sameContent(inRoot(rootA, entry.path), inRoot(rootB, entry.path)).catch(() => false))
    ) {
      changed.changes.push('content');
    }
  }
  if (before.link !== after.link) {
    changed.changes.push('link');
    changed.link = { from: before.link ?? '', to: after.link ?? '' };
  }
  const permissions = (mode: number) => (mode & 0o7777).toString(8).padStart(4, '0');
  if (permissions(before.mode) !== permissions(after.mode)) {
    changed.changes.push('mode');
    changed.mode = { from: permissions(before.mode), to: permissions(after.mode) };
  }
  if (before.uid !== after.uid || before.gid !== after.gid) {
    changed.changes.push('owner');
    changed.owner = { from: `${before.uid}:${before.gid}`, to: `${after.uid}:${after.gid}` };
  }
  // A folder's mtime moves with every entry added or removed, which are
  // listed already; new content or a new link target implies a new mtime.
  if (entry.type !== 'dir' && before.mtimeMs !== after.mtimeMs && !changed.changes.some((change) => change === 'content' || change === 'link')) {
    changed.changes.push('mtime');
  }
  return changed;
}

/** The host path of an image path under a mounted root; names are taken byte for byte (see snapshotRoot). */
function inRoot(root: string, imagePath: string): string {
  return path.join(root, imagePath);
}

/** Byte-for-byte comparison, streamed, stopping at the first difference. */
export async function sameContent(fileA: string, fileB: string): Promise<boolean> {
  const streamA = createReadStream(fileA, { highWaterMark: 1 << 20 });
  const streamB = createReadStream(fileB, { highWaterMark: 1 << 20 });
  const iteratorA = streamA[Symbol.asyncIterator]();
  const iteratorB = streamB[Symbol.asyncIterator]();
  let pendingA: Buffer = Buffer.alloc(0);
  let pendingB: Buffer = Buffer.alloc(0);
  let doneA = false;
  let doneB = false;
  try {
    for (;;) {
      if (!pendingA.length && !doneA) {
        const next = await iteratorA.next();
        if (next.done) doneA = true;
        else pendingA = next.value as Buffer;
      }
      if (!pendingB.length && !doneB) {
        const next = await iteratorB.next();
        if (next.done) doneB = true;
        else pendingB = next.value as Buffer;
      }
      if (!pendingA.length || !pendingB.length) return !pendingA.length && !pendingB.length && doneA && doneB;
      const length = Math.min(pendingA.length, pendingB.length);
      if (!pendingA.subarray(0, length).equals(pendingB.subarray(0, length))) return false;
      pendingA = pendingA.subarray(length);
      pendingB = pendingB.subarray(length);
    }
  } finally {
    streamA.destroy();
    streamB.destroy();
  }
}

/** `virt-diff`-like lines: `+ file 34 B /etc/hello`, `- dir /run`, `~ file content,mode 0644->0600 /etc/x`. */
export function formatRootDiff(diff: RootDiff, formatSize: (bytes: number) => string): string[] {
  const lines: string[] = [];
  type Line = { path: string; text: string };
  const all: Line[] = [
    ...diff.files.added.map((entry) => ({ path: entry.path, text: `+ ${entry.type.padEnd(7)} ${sizeOf(entry, formatSize).padStart(9)}  ${entry.path}` })),
    ...diff.files.removed.map((entry) => ({ path: entry.path, text: `- ${entry.type.padEnd(7)} ${sizeOf(entry, formatSize).padStart(9)}  ${entry.path}` })),
    ...diff.files.changed.map((entry) => ({
      path: entry.path,
      text: `~ ${entry.type.padEnd(7)} ${sizeOf(entry, formatSize).padStart(9)}  ${entry.path}  (${describeChanges(entry, formatSize)})`,
    })),
  ];
  for (const line of all.sort((x, y) => comparePaths(x.path, y.path))) lines.push(line.text);
  return lines;
}

function sizeOf(entry: Entry, formatSize: (bytes: number) => string): string {
  return entry.type === 'file' ? formatSize(entry.size) : '';
}

function describeChanges(entry: ChangedEntry, formatSize: (bytes: number) => string): string {
  return entry.changes
    .map((change) => {
      switch (change) {
        case 'size':
          return `size ${formatSize(entry.sizeBefore ?? 0)} -> ${formatSize(entry.size)}`;
        case 'mode':
          return `mode ${entry.mode!.from} -> ${entry.mode!.to}`;
        case 'owner':
          return `owner ${entry.owner!.from} -> ${entry.owner!.to}`;
        case 'link':
          return `link ${entry.link!.from} -> ${entry.link!.to}`;
        default:
          return change;
      }
    })
    .join(', ');
}

/** Package changelog lines: `+ curl 7.88.1-10`, `- nano 7.2-1`, `~ libc6 2.36-9 -> 2.36-9+deb12u4`. */
export function formatPackageChanges(packages: NonNullable<RootDiff['packages']>): string[] {
  return [
    ...packages.installed.map((pkg) => ({ name: pkg.name, text: `+ ${pkg.name} ${pkg.version}` })),
    ...packages.removed.map((pkg) => ({ name: pkg.name, text: `- ${pkg.name} ${pkg.version}` })),
    ...packages.upgraded.map((pkg) => ({
      name: pkg.name,
      text: `~ ${pkg.name} ${pkg.from} -> ${pkg.to}`,
    })),
  ]
    .sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0))
    .map((line) => line.text);
}
