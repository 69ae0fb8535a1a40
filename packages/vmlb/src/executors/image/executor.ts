import { existsSync, lstatSync, renameSync, rmSync, symlinkSync } from 'node:fs';
import * as path from 'node:path';
import type { ExecutorContext } from '@nx/devkit';
import { releaseAllLeftovers } from '../../lib/disk-attach';
import { reportFailure } from '../../lib/executor-errors';
import { checkPrerequisites } from '../../lib/prerequisites';
import { convertToQcow2 } from '../../lib/qcow2';
import { REMOTE_CACHE_WARNING_ENV } from '../../lib/remote-cache-probe';
import type { ImageExecutorSchema } from './schema';

export function normalizeOptions(options: ImageExecutorSchema, workspaceRoot: string) {
  return {
    imageName: options.imageName,
    chain: path.resolve(workspaceRoot, options.chain),
    output: path.resolve(workspaceRoot, options.output),
    flatten: options.flatten ?? false,
  };
}

export default async function imageExecutor(options: ImageExecutorSchema, context: ExecutorContext): Promise<{ success: boolean }> {
  return reportFailure(async () => {
    const { imageName, chain, output, flatten } = normalizeOptions(options, context.root);
    const cacheWarning = process.env[REMOTE_CACHE_WARNING_ENV];
    if (cacheWarning) console.warn(`vmlb: warning: ${cacheWarning}`);
    // A layer killed mid-build and then restored from the Nx cache never ran
    // again to release what it left attached; do it here (this target always runs).
    await releaseAllLeftovers(path.dirname(chain), (message) => console.log(message));
    if (!existsSync(chain)) throw new Error(`Image ${imageName}: the top of its chain ${options.chain} does not exist; build its layers first.`);
    if (flatten) {
      checkPrerequisites(['qemu-img'], { fuse: false, disks: false });
      // A qcow2 to qcow2 convert writes every layer's data into one file with no backing file.
      await convertToQcow2(chain, output, { sourceFormat: 'qcow2', progress: true });
      console.log(`vmlb: image ${imageName} flattened into ${options.output} (standalone, no backing file)`);
      return;
    }
    // A relative link in the same folder stays valid when dist/ is moved or restored from a cache.
    const temporary = `${output}.${process.pid}.link`;
    rmSync(temporary, { force: true });
    symlinkSync(path.relative(path.dirname(output), chain), temporary);
    if (existsSync(output) || isLink(output)) rmSync(output, { force: true });
    renameSync(temporary, output);
    console.log(`vmlb: image ${imageName}: ${options.output} -> ${path.basename(chain)}`);
  });
}

function isLink(file: string): boolean {
  try {
    return lstatSync(file).isSymbolicLink();
  } catch {
    return false;
  }
}
