import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { writeFileAtomic } from '../util/atomic-file';
import { isDigest, isSha256 } from '../cache-identity/digest';

/**
 * In blob mode a layer's Nx outputs are this small file and the digest: the
 * qcow2 itself lives in a content-addressed blob store, named by the sha256
 * of its bytes. Nx caches and shares refs; vmlb moves the bytes.
 */
export interface LayerRef {
  /** sha256 of the qcow2's bytes: its name in the blob stores. */
  sha256: string;
  /** Size of the qcow2 in bytes. */
  size: number;
  /** Chain digest (same as the .digest file beside it). */
  digest: string;
  /** File name of the parent in the same folder (its own ref sits beside it), or `../<image>/<file>` in another image's folder; none for a base. */
  parent?: string;
  /** Nx project and target that build it, for messages ("rebuild with ..."). */
  builtBy: string;
}

/** Reads and checks a ref; a missing file throws Node's ENOENT error (check `code`). */
export async function readRef(refPath: string): Promise<LayerRef> {
  const text = await fs.readFile(refPath, 'utf8');
  let ref: LayerRef;
  try {
    ref = JSON.parse(text) as LayerRef;
  } catch {
    throw new Error(`Layer ref ${refPath} is not JSON. Delete it and rebuild the layer.`);
  }
  const problems = [
    !isSha256(String(ref.sha256)) && 'sha256',
    !Number.isSafeInteger(ref.size) && 'size',
    !isDigest(String(ref.digest)) && 'digest',
    ref.parent !== undefined && !isParentName(ref.parent, refPath) && 'parent',
    typeof ref.builtBy !== 'string' && 'builtBy',
  ].filter(Boolean);
  if (problems.length) throw new Error(`Layer ref ${refPath} has a malformed ${problems.join(', ')}. Delete it and rebuild the layer.`);
  return ref;
}

/**
 * A parent is a bare qcow2 file name in the ref's own folder (`base.qcow2`,
 * `10_update.qcow2`), or one in a sibling image folder (`../prod/20_packages.qcow2`,
 * a derived image's first layer): never further out of dist/, and not the
 * layer itself.
 */
function isParentName(parent: unknown, refPath: string): boolean {
  return (
    typeof parent === 'string' &&
    /^(\.\.\/[A-Za-z0-9][A-Za-z0-9._-]*\/)?[A-Za-z0-9_][A-Za-z0-9._-]*\.qcow2$/.test(parent) &&
    parent !== path.basename(refPath).replace(/\.ref$/, '.qcow2')
  );
}

/** Writes a ref atomically (temporary file, fsync, rename). */
export async function writeRef(refPath: string, ref: LayerRef): Promise<void> {
  await writeFileAtomic(refPath, `${JSON.stringify(ref, null, 2)}\n`);
}
