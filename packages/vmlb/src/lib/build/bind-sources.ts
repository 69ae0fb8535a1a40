import { existsSync, mkdirSync, realpathSync } from 'node:fs';
import * as path from 'node:path';
import type { BindMountHint } from '../image/hints';

/**
 * `# chroot-bind-mount` and `# chroot-bind-mount-rw` sources: paths relative
 * to the layer folder that stay inside the workspace, even through
 * symlinks. Their files are the layer's input (part of its key), so nothing
 * of the host outside the workspace reaches a script this way.
 */

/** The folders a bind source is checked against, as given (for messages) and with their links resolved. */
interface BindRoots {
  workspaceRoot: string;
  layerDir: string;
}

/** Whether `candidate` is `folder` or inside it (both with their links resolved). */
function isInside(folder: string, candidate: string): boolean {
  return candidate === folder || candidate.startsWith(`${folder}/`);
}

/**
 * The real path of a bind source, checked to lie inside the workspace after
 * following every symlink. A read-only one outside the layer folder must be
 * named by its own path, not through a link: its files are in the key by
 * that path. A read-write one may neither be in the layer folder nor hold
 * it (the layer's own files stay read-only), and is made as a folder when
 * missing (a cache folder that a fresh checkout does not have).
 */
export function bindSource(roots: BindRoots, hint: Pick<BindMountHint, 'source' | 'readWrite'>): string {
  const { source } = hint;
  const candidate = path.resolve(roots.layerDir, source);
  const realWorkspace = realpathSync(roots.workspaceRoot);
  if (!existsSync(candidate)) {
    if (!hint.readWrite) {
      throw new Error(
        `chroot-bind-mount source '${source}' does not exist (${candidate}). Create it, or fix the path (it is relative to the layer folder ${roots.layerDir}).`,
      );
    }
    // Made only where its nearest existing folder is the workspace's: never through a link out of it.
    const existing = nearestExisting(candidate);
    if (!isInside(realWorkspace, realpathSync(existing))) throw outsideWorkspace(source, realpathSync(existing), roots.workspaceRoot);
    mkdirSync(candidate, { recursive: true });
  }
  const real = realpathSync(candidate);
  if (!isInside(realWorkspace, real)) throw outsideWorkspace(source, real, roots.workspaceRoot);
  const realLayer = realpathSync(roots.layerDir);
  // The key holds the files at the path the hint names (Nx follows no link to a folder): a link out of the layer folder would leave them out.
  const named = path.join(realWorkspace, path.relative(roots.workspaceRoot, candidate));
  if (!hint.readWrite && real !== named && !isInside(realLayer, real)) {
    const layerInWorkspace = path.join(realWorkspace, path.relative(roots.workspaceRoot, roots.layerDir));
    throw new Error(
      `chroot-bind-mount source '${source}' leads through a symlink to ${real}, outside the layer folder; the layer's cache key holds the files at the path a hint names, ` +
        `and Nx does not follow links to them. Name the real path instead: # chroot-bind-mount ${path.relative(layerInWorkspace, real)} <target>`,
    );
  }
  if (hint.readWrite && (isInside(realLayer, real) || isInside(real, realLayer))) {
    throw new Error(
      `chroot-bind-mount-rw source '${source}' resolves to ${real}, which ${isInside(realLayer, real) ? 'is inside' : 'holds'} the layer folder ${roots.layerDir}: ` +
        `the layer's own files are its input and stay read-only. Use a folder beside it, e.g. ../cache, or # chroot-bind-mount to read it.`,
    );
  }
  return real;
}

/** The error for a source that leads out of the workspace, with the fix. */
function outsideWorkspace(source: string, real: string, workspaceRoot: string): Error {
  return new Error(
    `bind source '${source}' resolves to ${real}, outside the workspace ${workspaceRoot}; bind sources must stay inside the workspace, whose files make the layer's cache key. ` +
      `Copy what the layer needs into the workspace (beside the layer folders, e.g. ../common) instead of linking to it.`,
  );
}

/** The deepest folder of `file`'s path that exists. */
function nearestExisting(file: string): string {
  let folder = path.dirname(file);
  while (!existsSync(folder)) folder = path.dirname(folder);
  return folder;
}

/**
 * Checks every bind source of a script before anything is attached (they
 * are checked again when mounted); the message names the script and the
 * hint.
 */
export function checkBindSources(roots: BindRoots, bindMounts: readonly BindMountHint[], script: string): void {
  for (const hint of bindMounts) {
    try {
      bindSource(roots, hint);
    } catch (error) {
      throw new Error(`${script}: # ${bindHintName(hint)} ${hint.source} ${hint.target}: ${(error as Error).message}`);
    }
  }
}

/** The hint as the script names it. */
export function bindHintName(hint: Pick<BindMountHint, 'readWrite'>): string {
  return hint.readWrite ? 'chroot-bind-mount-rw' : 'chroot-bind-mount';
}
