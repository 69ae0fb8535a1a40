import { lstatSync, readdirSync, readlinkSync, type Stats } from 'node:fs';
import * as path from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { DPKG_STATUS, type InstalledPackages, readPackages } from './dpkg-status';
import { type FileState, comparePaths, hasChanged, isVanished, typeOf } from './file-entries';

/**
 * Snapshots of an image's mounted root: one taken before the layer script
 * runs and one after tell what the layer changed (see layer-manifest).
 * Only metadata is read (one lstat per entry, never file contents), so a
 * Debian root of ~50k entries takes well under a second once its inodes are
 * cached.
 */

/** An image root at one moment: every path in it, and its installed packages. */
export interface RootSnapshot extends InstalledPackages {
  /** Absolute paths inside the image ("/etc/hostname"), the root itself as "/". */
  files: Map<string, FileState>;
  /** Folders where another filesystem is mounted: listed themselves, but not looked into. */
  mountPoints?: string[];
}

/**
 * Folders whose contents never belong to the image: at boot, and while a
 * layer script runs, a pseudo or memory filesystem is mounted over them. The
 * folders themselves are listed; what the image has underneath is not.
 */
export const VOLATILE_FOLDERS: ReadonlySet<string> = new Set(['/proc', '/sys', '/dev', '/run']);

/** Entries walked between two yields to the event loop, so a long walk does not stall timers and signals. */
const ENTRIES_PER_TURN = 4096;

/**
 * Walks `root` (the absolute path of a mounted image root) and reads its
 * dpkg database. Symlinks are recorded, never followed; folders on another
 * filesystem than the root (other mounts) are recorded but not entered.
 */
export async function snapshotRoot(root: string): Promise<RootSnapshot> {
  if (!path.isAbsolute(root)) throw new Error(`Image root ${root} is not an absolute path.`);
  const rootPath = path.resolve(root);
  const { files, mountPoints } = await walkRoot(rootPath);
  return { files, mountPoints, ...(await readPackages(rootPath)) };
}

/** A folder to list: its path on the host (latin1, see walkRoot) and inside the image. */
interface PendingFolder {
  hostPath: string;
  imagePath: string;
}

/**
 * A depth-first walk with synchronous readdir and lstat, yielding to the
 * event loop every few thousand entries. Measured on a copy of a Debian
 * /usr (139k entries, 2 vCPUs): warm cache ~1.3 s synchronous against
 * ~3.5-4.5 s for fs.promises with 16-64 operations in flight (per-call
 * promise and thread-pool overhead dominate; lstat itself is ~60% of the
 * synchronous time). On a freshly mounted, cold filesystem the promise walk
 * was faster (~4.5 s against ~6 s), but the snapshot taken after a layer
 * script finds the inodes cached by the one taken before it, so the sum is
 * about even and the simpler walk wins.
 *
 * Names are read as latin1, which maps every byte to one character, and
 * turned back into bytes for each system call: a file name that is not
 * valid UTF-8 (tarballs carry them) is still found, not lost to U+FFFD.
 */
async function walkRoot(rootPath: string): Promise<{ files: Map<string, FileState>; mountPoints: string[] }> {
  const rootHostPath = Buffer.from(rootPath).toString('latin1');
  const rootStats = lstatOrThrow(rootHostPath, '/', rootPath);
  if (!rootStats) throw new Error(`Image root ${rootPath} does not exist.`);
  if (!rootStats.isDirectory()) throw new Error(`Image root ${rootPath} is not a folder.`);
  const files = new Map<string, FileState>([['/', stateOf(rootStats)]]);
  const mountPoints: string[] = [];
  await walkFolders(rootPath, rootStats.dev, [{ hostPath: rootHostPath, imagePath: '' }], files, mountPoints);
  return { files, mountPoints: mountPoints.sort(comparePaths) };
}

/** Walks the folders in `pending` and everything below them into `files`. */
async function walkFolders(rootPath: string, rootDev: number, pending: PendingFolder[], files: Map<string, FileState>, mountPoints: string[]): Promise<void> {
  let sinceYield = 0;
  while (pending.length) {
    const folder = pending.pop()!;
    const names = listFolder(folder, rootPath);
    for (const name of names) {
      const hostPath = `${folder.hostPath}/${name}`;
      const imagePath = `${folder.imagePath}/${imageName(name)}`;
      const stats = lstatOrThrow(hostPath, imagePath, rootPath);
      if (!stats) continue; // removed while we walked
      files.set(imagePath, stateOf(stats, stats.isSymbolicLink() ? readLink(hostPath, imagePath, rootPath) : undefined));
      if (!stats.isDirectory()) continue;
      if (stats.dev !== rootDev) mountPoints.push(imagePath);
      else if (!VOLATILE_FOLDERS.has(imagePath)) pending.push({ hostPath, imagePath });
    }
    sinceYield += names.length;
    if (sinceYield >= ENTRIES_PER_TURN) {
      sinceYield = 0;
      await nextTurn();
    }
  }
}

/**
 * The snapshot `root` would give now, computed from `before` (taken of the
 * same filesystem earlier) and the inodes changed since: only paths whose
 * inode changed are looked at again, and only folders whose inode changed
 * are listed again (a new entry, a removed one and a rename all change the
 * folder's ctime). New folders are walked whole. Gives the same result as
 * snapshotRoot(root) when `changedInodes` holds every inode changed since
 * `before` was taken (extra ones only cost an lstat each).
 *
 * Returns undefined when a path cannot be mapped back to a host path
 * byte for byte (a name that is not UTF-8); the caller then walks.
 */
export async function updateSnapshot(before: RootSnapshot, root: string, changedInodes: ReadonlySet<number>): Promise<RootSnapshot | undefined> {
  const rootPath = path.resolve(root);
  const rootHostPath = Buffer.from(rootPath).toString('latin1');
  const rootStats = lstatOrThrow(rootHostPath, '/', rootPath);
  if (!rootStats?.isDirectory()) throw new Error(`Image root ${rootPath} is not a folder.`);

  const files = new Map(before.files);
  const children = new Map<string, string[]>();
  const byInode = new Map<number, string[]>();
  for (const [imagePath, state] of before.files) {
    if (imagePath !== '/') {
      const parent = parentOf(imagePath);
      const list = children.get(parent);
      if (list) list.push(imagePath);
      else children.set(parent, [imagePath]);
    }
    if (!changedInodes.has(state.ino)) continue;
    const list = byInode.get(state.ino);
    if (list) list.push(imagePath);
    else byInode.set(state.ino, [imagePath]);
  }
  const candidates = [...byInode.values()].flat().sort(comparePaths);
  if (candidates.some((imagePath) => imagePath.includes('\\x'))) return undefined;

  const removeTree = (imagePath: string) => {
    files.delete(imagePath);
    for (const child of children.get(imagePath) ?? []) removeTree(child);
  };
  const hostPathOf = (imagePath: string) => (imagePath === '/' ? rootHostPath : rootHostPath + Buffer.from(imagePath).toString('latin1'));
  const mountPoints: string[] = [];
  const newFolders: PendingFolder[] = [];
  let looked = 0;
  for (const imagePath of candidates) {
    // Its folder went away, or is no folder any more (the script replaced it
    // with a symlink, maybe to a host folder): already removed, and never
    // looked up through the link. Parents come first, so theirs is current.
    const parent = imagePath === '/' ? undefined : files.get(parentOf(imagePath));
    if (imagePath !== '/' && (!parent || typeOf(parent.mode) !== 'dir')) continue;
    const hostPath = hostPathOf(imagePath);
    const stats = lstatOrThrow(hostPath, imagePath, rootPath);
    if (!stats) {
      removeTree(imagePath);
      continue;
    }
    const wasFolder = typeOf(before.files.get(imagePath)!.mode) === 'dir';
    files.set(imagePath, stateOf(stats, stats.isSymbolicLink() ? readLink(hostPath, imagePath, rootPath) : undefined));
    if (wasFolder && !stats.isDirectory()) {
      for (const child of children.get(imagePath) ?? []) removeTree(child);
    }
    if (!stats.isDirectory() || VOLATILE_FOLDERS.has(imagePath) || stats.dev !== rootStats.dev) continue;
    if (!wasFolder) {
      newFolders.push({ hostPath, imagePath: imagePath === '/' ? '' : imagePath });
      continue;
    }
    // A folder that changed: what it holds now against what it held.
    const folder = { hostPath, imagePath: imagePath === '/' ? '' : imagePath };
    const present = new Set<string>();
    for (const name of listFolder(folder, rootPath)) {
      const childPath = `${folder.imagePath}/${imageName(name)}`;
      present.add(childPath);
      const childHost = `${hostPath}/${name}`;
      const known = files.has(childPath) ? before.files.get(childPath) : undefined;
      // Known, and looked at already: its inode changed.
      if (known && changedInodes.has(known.ino)) continue;
      const childStats = lstatOrThrow(childHost, childPath, rootPath);
      if (!childStats) continue;
      // Known and the same inode: untouched. Another inode under the old name
      // is a file renamed over it (dpkg's status, ldconfig's cache), whose old
      // inode was freed where the inode scan does not look: a new entry.
      if (known && childStats.ino === known.ino) continue;
      if (known) removeTree(childPath);
      files.set(childPath, stateOf(childStats, childStats.isSymbolicLink() ? readLink(childHost, childPath, rootPath) : undefined));
      if (childStats.isDirectory()) {
        if (childStats.dev !== rootStats.dev) mountPoints.push(childPath);
        else if (!VOLATILE_FOLDERS.has(childPath)) newFolders.push({ hostPath: childHost, imagePath: childPath });
      }
    }
    for (const child of children.get(imagePath) ?? []) if (!present.has(child)) removeTree(child);
    if (++looked % ENTRIES_PER_TURN === 0) await nextTurn();
  }
  await walkFolders(rootPath, rootStats.dev, newFolders, files, mountPoints);

  const snapshot: RootSnapshot = { files, mountPoints: mountPoints.sort(comparePaths) };
  // The database is parsed again only when the script touched it.
  const status = files.get(DPKG_STATUS);
  const previous = before.files.get(DPKG_STATUS);
  const untouched = status && previous && !hasChanged(previous, status) && before.packageManager === 'dpkg';
  const packages = untouched
    ? { packageManager: before.packageManager, packages: before.packages, packageArchitectures: before.packageArchitectures }
    : await readPackages(rootPath);
  return { ...snapshot, ...packages };
}

function parentOf(imagePath: string): string {
  const slash = imagePath.lastIndexOf('/');
  return slash <= 0 ? '/' : imagePath.slice(0, slash);
}

function hostBytes(latin1Path: string): Buffer {
  return Buffer.from(latin1Path, 'latin1');
}

/** A folder's entry names (latin1), or none when it vanished while we walked. */
function listFolder(folder: PendingFolder, rootPath: string): string[] {
  try {
    return readdirSync(hostBytes(folder.hostPath), { encoding: 'latin1' });
  } catch (error) {
    if (isVanished(error)) return [];
    throw walkError('list', folder.imagePath || '/', rootPath, error);
  }
}

function lstatOrThrow(hostPath: string, imagePath: string, rootPath: string): Stats | undefined {
  try {
    return lstatSync(hostBytes(hostPath), { throwIfNoEntry: false });
  } catch (error) {
    if (isVanished(error)) return undefined;
    throw walkError('stat', imagePath, rootPath, error);
  }
}

function readLink(hostPath: string, imagePath: string, rootPath: string): string {
  try {
    return imageName(readlinkSync(hostBytes(hostPath), { encoding: 'latin1' }));
  } catch (error) {
    throw walkError('read the link', imagePath, rootPath, error);
  }
}

function walkError(action: string, imagePath: string, rootPath: string, cause: unknown): Error {
  const reason = cause instanceof Error ? cause.message : String(cause);
  return new Error(`Cannot ${action} ${imagePath} in the image mounted at ${rootPath}: ${reason}`, { cause });
}

const NON_ASCII = /[^\x00-\x7f]/;

/**
 * A latin1-read name as text: itself when ASCII, its UTF-8 decoding when
 * valid, otherwise with each byte above 0x7f written as `\xNN`, so distinct
 * names stay distinct keys.
 */
function imageName(latin1Name: string): string {
  if (!NON_ASCII.test(latin1Name)) return latin1Name;
  const bytes = Buffer.from(latin1Name, 'latin1');
  const decoded = bytes.toString('utf8');
  if (Buffer.from(decoded, 'utf8').equals(bytes)) return decoded;
  return latin1Name.replace(/[\x80-\xff]/g, (char) => `\\x${char.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

function stateOf(stats: Stats, link?: string): FileState {
  const state: FileState = { size: stats.size, mtimeMs: stats.mtimeMs, ino: stats.ino, mode: stats.mode, uid: stats.uid, gid: stats.gid };
  if (link !== undefined) state.link = link;
  return state;
}
