import { lstatSync, readlinkSync } from 'node:fs';
import * as path from 'node:path';

/**
 * Resolves a path inside a mounted image the way the image itself would:
 * symlinks are followed relative to the image's root, never the host's, and
 * `..` cannot climb above the root. Used for every mount target, so that an
 * image whose `/mnt` is a symlink to `/../../etc` cannot make vmlb mount
 * over a host folder.
 */
export function resolveInRoot(root: string, imagePath: string, maxLinks = 40): string {
  const parts = imagePath.split('/').filter(Boolean);
  const resolved: string[] = [];
  let links = 0;
  while (parts.length) {
    const part = parts.shift()!;
    if (part === '.') continue;
    if (part === '..') {
      resolved.pop();
      continue;
    }
    const candidate = path.join(root, ...resolved, part);
    let stat;
    try {
      stat = lstatSync(candidate);
    } catch {
      resolved.push(part);
      continue;
    }
    if (!stat.isSymbolicLink()) {
      resolved.push(part);
      continue;
    }
    if (++links > maxLinks) throw new Error(`Too many symbolic links resolving ${imagePath} inside the image.`);
    const target = readlinkSync(candidate);
    if (target.startsWith('/')) resolved.length = 0;
    parts.unshift(...target.split('/').filter(Boolean));
  }
  return path.join(root, ...resolved);
}
