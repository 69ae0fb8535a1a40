import { existsSync, lstatSync, readdirSync, renameSync, rmSync, statSync, symlinkSync } from 'node:fs';
import * as path from 'node:path';
import type { ExecutorContext } from '@nx/devkit';
import { nxDevkit } from '../../lib/util/nx-devkit';
import { materialiseChain } from '../../lib/blob/chain';
import { verifyChain } from '../../lib/cache-identity/chain-verify';
import { openBlobStores } from '../../lib/blob/config';
import { releaseAllLeftovers } from '../../lib/disk/disk-attach';
import { withInterruptSignal } from '../../lib/util/interrupt';
import { discoverImage } from '../../lib/image/layer-discovery';
import { reportFailure } from '../../lib/util/executor-errors';
import { checkPrerequisites } from '../../lib/build/prerequisites';
import { exportDisk } from '../../lib/export/disk-export';
import { refPathFor, staleLayerFiles } from '../../lib/image/dist-layout';
import { formatBytes } from '../../lib/util/units';
import { REMOTE_CACHE_WARNING_ENV } from '../../lib/cache-identity/remote-cache-probe';
import type { ImageExecutorSchema } from './schema';
import { checkTargetDefaults } from '../../lib/cache-identity/target-defaults-guard';
import { chainTop } from '../../lib/image/image-chain';
import { checkQcow2Compat } from '../../lib/disk/qcow2';
import { buildChainUpTo } from '../../lib/build/chain-task';

export function normalizeOptions(options: ImageExecutorSchema, workspaceRoot: string) {
  return {
    imageName: options.imageName,
    chain: path.resolve(workspaceRoot, chainTop(options, workspaceRoot)),
    output: path.resolve(workspaceRoot, options.output),
    flatten: options.flatten ?? false,
    verify: options.verify ?? false,
    qcow2Compat: checkQcow2Compat(options.qcow2Compat, '--qcow2Compat'),
    upTo: options.upTo,
  };
}

/**
 * The image folder's warnings (a folder that looks like a layer but is
 * not one), again: with the Nx daemon on, the plugin's own warnings go to
 * the daemon's log, never to the user's terminal.
 */
function reportImageWarnings(context: ExecutorContext): void {
  const root = context.projectsConfigurations.projects[context.projectName!]?.root;
  if (!root) return;
  discoverImage(context.root, root).warnings.forEach((warning) => console.warn(`vmlb: warning: ${warning}`));
}

export default async function imageExecutor(options: ImageExecutorSchema, context: ExecutorContext): Promise<{ success: boolean }> {
  return reportFailure(async () => {
    checkTargetDefaults(context);
    const { imageName, chain, output, flatten, verify, qcow2Compat, upTo } = normalizeOptions(options, context.root);
    const cacheWarning = process.env[REMOTE_CACHE_WARNING_ENV];
    if (cacheWarning) console.warn(`vmlb: warning: ${cacheWarning}`);
    reportImageWarnings(context);
    if (upTo !== undefined) await withInterruptSignal((signal) => buildChainUpTo({ ...options, upTo }, context, (message) => console.log(message), signal));
    // A layer killed mid-build and then restored from the Nx cache never ran
    // again to release what it left attached; do it here (this target always runs).
    // The image's own folder: a derived image without layers of its own has its chain top in another image's.
    await releaseAllLeftovers(path.dirname(output), (message) => console.log(message));
    reportStaleLayerFiles(imageName, path.dirname(output), context);
    if (options.blobs) {
      if (flatten || verify) {
        // Both read every byte of the chain: its layer files must be in place first.
        await withInterruptSignal(async (signal) =>
          materialiseChain(chain, await openBlobStores(context.root), { log: (message) => console.log(message), signal }),
        );
      } else if (!existsSync(refPathFor(chain))) {
        throw new Error(`Image ${imageName}: the top of its chain ${path.relative(context.root, refPathFor(chain))} does not exist; build its layers first.`);
      } else {
        // Blob mode: a build made of cache hits has refs only; the bytes come when something reads them.
        if (!existsSync(chain))
          console.log(
            `vmlb: image ${imageName}: its layer files are not in dist/ yet; nx run image-${imageName}:pull fetches them (test-boot and flatten do it themselves)`,
          );
        linkImage(chain, output);
        console.log(`vmlb: image ${imageName}: ${options.output} -> ${path.basename(chain)}`);
        return;
      }
    }
    if (!existsSync(chain))
      throw new Error(`Image ${imageName}: the top of its chain ${path.relative(context.root, chain)} does not exist; build its layers first.`);
    if (verify) {
      await verifyChain(chain, {
        imageName,
        workspaceRoot: context.root,
        log: (message) => console.log(message),
        buildCommand: `nx run ${context.projectName}:${context.targetName} --verify`,
        nxCacheDir: nxDevkit().cacheDir,
      });
    }
    if (flatten) {
      checkPrerequisites(['qemu-img'], { fuse: false, disks: false });
      // A qcow2 to qcow2 convert writes every layer's data into one file with no backing file.
      const { sha256 } = await withInterruptSignal((signal) =>
        exportDisk(chain, output, { format: 'qcow2', compress: false, qcow2Compat, progress: true, signal }),
      );
      console.log(
        `vmlb: image ${imageName} flattened into ${options.output} (standalone, no backing file; sha256 ${sha256!.slice(0, 16)}... in ${path.basename(output)}.sha256)`,
      );
      return;
    }
    linkImage(chain, output);
    console.log(`vmlb: image ${imageName}: ${options.output} -> ${path.basename(chain)}`);
  });
}

/**
 * Files of layers the image no longer has (a layer folder renamed or
 * removed) stay in dist/ unused: nothing in the chain names them. They are
 * not deleted (the folder may come back, and its files with it), but said,
 * with the command that frees their space.
 */
function reportStaleLayerFiles(imageName: string, imageDir: string, context: ExecutorContext): void {
  const projects = context.projectsConfigurations?.projects;
  if (!projects || !existsSync(imageDir)) return;
  const layers = Object.values(projects)
    .filter((project) => project.tags?.includes(`vmlb:image:${imageName}`))
    .flatMap((project) => Object.values(project.targets ?? {}))
    .filter((target) => target.executor === 'vmlb:layer')
    .map((target) => String(target.options?.layer));
  const stale = staleLayerFiles(readdirSync(imageDir), layers);
  if (!stale.length) return;
  const shown = (name: string) => path.relative(context.root, path.join(imageDir, name));
  const bytes = stale.reduce((sum, name) => sum + statSync(path.join(imageDir, name)).size, 0);
  console.log(
    `vmlb: image ${imageName}: ${stale.length} file(s) in ${path.relative(context.root, imageDir)} belong to no layer of the image ` +
      `(a layer folder renamed or removed?) and are not used: ${stale.join(', ')} (${formatBytes(bytes)}). ` +
      `To free the space: rm ${stale.map(shown).join(' ')}`,
  );
}

/** A relative link in the same folder stays valid when dist/ is moved or restored from a cache. */
function linkImage(chain: string, output: string): void {
  // The checksum of an earlier flattened image.qcow2 does not describe a link.
  rmSync(`${output}.sha256`, { force: true });
  const temporary = `${output}.${process.pid}.link`;
  rmSync(temporary, { force: true });
  symlinkSync(path.relative(path.dirname(output), chain), temporary);
  if (existsSync(output) || isLink(output)) rmSync(output, { force: true });
  renameSync(temporary, output);
}

function isLink(file: string): boolean {
  try {
    return lstatSync(file).isSymbolicLink();
  } catch {
    return false;
  }
}
