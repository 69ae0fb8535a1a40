import { closeSync, lstatSync, openSync, readSync, readdirSync } from 'node:fs';
import * as path from 'node:path';

/** Whether a file holds `needle` anywhere, read in chunks that overlap by the needle's length. */
export function fileContains(file: string, needle: Buffer): boolean {
  const fd = openSync(file, 'r');
  try {
    const chunk = Buffer.alloc(4 * 1024 * 1024 + needle.length);
    let carried = 0;
    let position = 0;
    for (;;) {
      const read = readSync(fd, chunk, carried, chunk.length - carried, position);
      if (read === 0) return false;
      position += read;
      const filled = carried + read;
      if (chunk.subarray(0, filled).includes(needle)) return true;
      carried = Math.min(needle.length - 1, filled);
      chunk.copy(chunk, 0, filled - carried, filled);
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * Every regular file under `root` whose bytes hold `needle`, never following
 * a symlink (a workspace's node_modules is one); `skip` names folders (by
 * their name) not to enter.
 */
export function filesContaining(root: string, needle: Buffer, skip: string[] = []): string[] {
  const found: string[] = [];
  const pending = [root];
  while (pending.length) {
    const folder = pending.pop() as string;
    for (const name of readdirSync(folder)) {
      const file = path.join(folder, name);
      const stats = lstatSync(file);
      if (stats.isDirectory() && !skip.includes(name)) pending.push(file);
      else if (stats.isFile() && fileContains(file, needle)) found.push(file);
    }
  }
  return found.sort();
}
