import { constants as fsConstants } from 'node:fs';

/**
 * One entry of an image root as a snapshot records it (its metadata, never
 * its contents), and how two records of the same path are compared and sorted.
 */

export interface FileState {
  size: number;
  mtimeMs: number;
  ino: number;
  /** st_mode: file type and permission bits. */
  mode: number;
  /** Owner, so a chown shows as a change. Optional for snapshots built by hand. */
  uid?: number;
  gid?: number;
  /** Symlink target, for links. */
  link?: string;
}

export interface Entry {
  path: string;
  size: number;
  type: 'file' | 'dir' | 'symlink' | 'other';
}

/** Whether a path changed between two records of it (a folder's size and mtime do not count, see diffSnapshots). */
export function hasChanged(before: FileState, after: FileState): boolean {
  if (before.ino !== after.ino || before.mode !== after.mode || before.uid !== after.uid || before.gid !== after.gid) return true;
  if (before.link !== after.link) return true;
  if (typeOf(after.mode) === 'dir') return false;
  return before.size !== after.size || before.mtimeMs !== after.mtimeMs;
}

/** The entry a manifest lists for a path. */
export function entryOf(filePath: string, state: FileState): Entry {
  return { path: filePath, size: state.size, type: typeOf(state.mode) };
}

/** The kind of entry an st_mode stands for. */
export function typeOf(mode: number): Entry['type'] {
  switch (mode & fsConstants.S_IFMT) {
    case fsConstants.S_IFREG:
      return 'file';
    case fsConstants.S_IFDIR:
      return 'dir';
    case fsConstants.S_IFLNK:
      return 'symlink';
    default:
      return 'other';
  }
}

const SLASH = 0x2f;

/** Code-unit order, except that '/' sorts before every other character: "/a", "/a/b", "/a-b". */
export function comparePaths(a: string, b: string): number {
  const length = Math.min(a.length, b.length);
  for (let index = 0; index < length; index++) {
    const left = a.charCodeAt(index);
    const right = b.charCodeAt(index);
    if (left === right) continue;
    if (left === SLASH) return -1;
    if (right === SLASH) return 1;
    return left - right;
  }
  return a.length - b.length;
}

/** Whether a file system error says the path is gone (removed while we looked, or a folder above it replaced). */
export function isVanished(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}
