import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';

/**
 * Writes a small file atomically: the content goes to a temporary file in
 * the same folder (same filesystem, so rename is atomic), is flushed to
 * disk, then renamed over `target`. Readers see the old file or the new one,
 * never a partial one, even if we crash midway.
 *
 * `sync: false` leaves out the flush. On ext4 an fsync commits the journal,
 * which first writes out every dirty block allocated in the same
 * transaction: beside a freshly written multi-GB export, syncing one line
 * would wait for the whole export to reach the disk.
 */
export async function writeFileAtomic(target: string, content: string | Uint8Array, options: { sync?: boolean } = {}): Promise<void> {
  const temporary = path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    const handle = await fs.open(temporary, 'wx');
    try {
      await handle.writeFile(content);
      // Without the flush a crash after the rename can leave an empty file under the final name.
      if (options.sync !== false) await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(temporary, target);
  } catch (error) {
    await fs.rm(temporary, { force: true });
    throw error;
  }
}
