import { existsSync, realpathSync } from 'node:fs';
import * as path from 'node:path';
import type { BindMountHint } from '../image/hints';

/** `# chroot-bind-mount` sources: files of the layer folder only, even through symlinks. */

/** A bind-mount source must be inside the layer folder, even after following symlinks. */
export function bindSource(layerDir: string, source: string): string {
  const candidate = path.join(layerDir, source);
  if (!existsSync(candidate)) {
    throw new Error(
      `chroot-bind-mount source '${source}' does not exist in the layer folder ${layerDir}. Create it there, or fix the path (it is relative to the layer folder).`,
    );
  }
  const real = realpathSync(candidate);
  const realLayerDir = realpathSync(layerDir);
  if (real !== realLayerDir && !real.startsWith(`${realLayerDir}/`)) {
    throw new Error(
      `chroot-bind-mount source '${source}' resolves to ${real}, outside the layer folder ${layerDir}; bind sources must stay inside it. ` +
        `Copy what the layer needs into its folder instead of linking to it.`,
    );
  }
  return real;
}

/**
 * Checks every `# chroot-bind-mount` source of a script before anything is
 * attached (they are checked again when mounted); the message names the
 * script and the hint.
 */
export function checkBindSources(layerDir: string, bindMounts: readonly BindMountHint[], script: string): void {
  for (const hint of bindMounts) {
    try {
      bindSource(layerDir, hint.source);
    } catch (error) {
      throw new Error(`${script}: # chroot-bind-mount ${hint.source} ${hint.target}: ${(error as Error).message}`);
    }
  }
}
