import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { gunzip, gzip } from 'node:zlib';
import { writeFileAtomic } from '../util/atomic-file';
import type { FileState } from './file-entries';
import type { RootSnapshot } from './root-snapshot';

/**
 * A root snapshot on disk, gzipped JSON: one row per path (path, size,
 * mtime, inode, mode, uid, gid, link target). It records the chain digest
 * of the layer it describes, so it is only ever used as the starting point
 * of a build on exactly that layer. Package versions (dpkg) are stored with
 * it, so that a layer that installs nothing never parses the database.
 */
type Row = [path: string, size: number, mtimeMs: number, ino: number, mode: number, uid: number, gid: number, link?: string];

interface SnapshotFile {
  version: 1;
  digest: string;
  files: Row[];
  /** [key, version, architecture] per installed package, when the root has dpkg. */
  packages?: Array<[key: string, version: string, architecture: string]>;
}

/**
 * The listing's rows, gzipped, without the digest of the layer they
 * describe: a build encodes them while its disk detaches, before that
 * digest is known (`writeSnapshotFile` puts it in front). gzip members
 * read back as one stream.
 */
export async function encodeSnapshotBody(snapshot: RootSnapshot): Promise<Buffer> {
  const rows: Row[] = [];
  for (const [imagePath, state] of snapshot.files) {
    const row: Row = [imagePath, state.size, state.mtimeMs, state.ino, state.mode, state.uid ?? 0, state.gid ?? 0];
    if (state.link !== undefined) row.push(state.link);
    rows.push(row);
  }
  const body: Pick<SnapshotFile, 'files' | 'packages'> = { files: rows };
  if (snapshot.packageManager === 'dpkg' && snapshot.packages) {
    body.packages = [...snapshot.packages].map(([key, version]) => [key, version, snapshot.packageArchitectures?.get(key) ?? '']);
  }
  // Level 1: a few times smaller than the JSON, at a fraction of the default level's time.
  return promisify(gzip)(`,${JSON.stringify(body).slice(1)}`, { level: 1 });
}

/** Writes the listing of the layer whose chain digest is `digest`: from its snapshot, or from a body encodeSnapshotBody made. */
export async function writeSnapshotFile(file: string, snapshot: RootSnapshot | Buffer, digest: string): Promise<void> {
  const body = Buffer.isBuffer(snapshot) ? snapshot : await encodeSnapshotBody(snapshot);
  const head = await promisify(gzip)(`{"version":1,"digest":${JSON.stringify(digest)}`, { level: 1 });
  await writeFileAtomic(file, Buffer.concat([head, body]));
}

/** The stored snapshot of the layer whose digest is `digest`; undefined when there is none, or it is of another build. */
export async function readSnapshotFile(file: string, digest: string): Promise<RootSnapshot | undefined> {
  let parsed: SnapshotFile;
  try {
    parsed = JSON.parse((await promisify(gunzip)(await readFile(file))).toString('utf8')) as SnapshotFile;
  } catch {
    return undefined;
  }
  if (parsed?.version !== 1 || parsed.digest !== digest || !Array.isArray(parsed.files)) return undefined;
  const files = new Map<string, FileState>();
  for (const [imagePath, size, mtimeMs, ino, mode, uid, gid, link] of parsed.files) {
    const state: FileState = { size, mtimeMs, ino, mode, uid, gid };
    if (link !== undefined) state.link = link;
    files.set(imagePath, state);
  }
  const snapshot: RootSnapshot = { files };
  if (Array.isArray(parsed.packages)) {
    snapshot.packageManager = 'dpkg';
    snapshot.packages = new Map(parsed.packages.map(([key, version]) => [key, version]));
    snapshot.packageArchitectures = new Map(parsed.packages.map(([key, , architecture]) => [key, architecture]));
  }
  return snapshot;
}
