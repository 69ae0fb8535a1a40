import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';

/**
 * Writes a small file atomically: the content goes to a temporary file in
 * the same folder (same filesystem, so rename is atomic), is flushed to
 * disk, then renamed over `target`. Readers see the old file or the new one,
 * never a partial one, even if we crash midway.
 */
export async function writeFileAtomic(target: string, content: string | Uint8Array): Promise<void> {
  const temporary = path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    const handle = await fs.open(temporary, 'wx');
    try {
      await handle.writeFile(content);
      // Without the flush a crash after the rename can leave an empty file under the final name.
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(temporary, target);
  } catch (error) {
    await fs.rm(temporary, { force: true });
    throw error;
  }
}
