import { renameSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { run } from './exec';

/**
 * Writes a chain of overlays as one standalone qcow2 (no backing file),
 * with qemu-img's progress on the output. Written under a temporary name
 * and renamed, so an interrupted flatten leaves no partial file.
 */
export async function flattenChain(top: string, output: string): Promise<void> {
  const partial = path.join(path.dirname(output), `.${path.basename(output)}.partial`);
  rmSync(partial, { force: true });
  try {
    await run('qemu-img', ['convert', '-p', '-f', 'qcow2', '-O', 'qcow2', top, partial], { stream: true });
    rmSync(output, { force: true });
    renameSync(partial, output);
  } catch (error) {
    rmSync(partial, { force: true });
    throw error;
  }
}
