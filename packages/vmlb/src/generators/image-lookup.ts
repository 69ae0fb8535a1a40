import * as path from 'node:path';
import { type Tree, visitNotIgnoredFiles } from '@nx/devkit';
import { findImageFolders } from '../lib/image/image-folders';
import { IMAGE_CONFIG_FILE } from '../lib/image/image-files';

/** An image the generators found in the workspace. */
export interface ImageInTree {
  /** image.json's `name`, else the folder's name. */
  name: string;
  /** Workspace-relative folder, e.g. `images/prod` or `infra/vm/web`. */
  root: string;
}

/** Every image in the tree, by the same rule the plugin infers them with (lib/image/image-folders). */
export function imagesInTree(tree: Tree): ImageInTree[] {
  const candidates: string[] = [];
  visitNotIgnoredFiles(tree, '.', (file) => {
    const normalized = file.replace(/^\.\//, '');
    const base = path.posix.basename(normalized);
    if (base === IMAGE_CONFIG_FILE || base === 'build-layer' || base === 'modify-disk') candidates.push(normalized);
  });
  const folders = findImageFolders(candidates, (file) => tree.read(file, 'utf8') ?? '');
  return [...folders.keys()]
    .map((root) => ({ name: declaredName(tree, root) ?? path.posix.basename(root), root }))
    .sort((a, b) => a.root.localeCompare(b.root));
}

/** The images whose name is `image`, or whose folder is `image` (a workspace-relative path). */
export function findImages(tree: Tree, image: string): ImageInTree[] {
  const folder = path.posix.normalize(image.replace(/\\/g, '/')).replace(/\/$/, '');
  return imagesInTree(tree).filter((found) => found.name === image || found.root === folder);
}

/** image.json's `name` field, when the file is readable JSON that has one. */
function declaredName(tree: Tree, root: string): string | undefined {
  try {
    const json = JSON.parse(tree.read(path.posix.join(root, IMAGE_CONFIG_FILE), 'utf8') ?? '{}') as { name?: unknown };
    return typeof json.name === 'string' ? json.name : undefined;
  } catch {
    return undefined;
  }
}
