import * as path from 'node:path';
import { type Tree, formatFiles } from '@nx/devkit';
import type { Mode } from 'node:fs';

/** Layer scripts must be executable: layer discovery refuses them otherwise. */
export const EXECUTABLE_MODE = '755';

/**
 * The `files/` folder of a generator. Templates are not compiled: they ship
 * as `src/generators/<name>/files/**` (see package.json `files`), while the
 * generator runs from `dist/generators/<name>/` once built and from
 * `src/generators/<name>/` under ts-jest. This module sits one level below
 * the package root in both trees, so the path is the same from either.
 */
export function templateDir(generatorName: string): string {
  return path.join(__dirname, '..', '..', 'src', 'generators', generatorName, 'files');
}

/**
 * formatFiles, then the file modes it may have dropped. A formatter that
 * handles shell scripts (prettier-plugin-sh recognises them by their shebang)
 * rewrites them with `tree.write`, which records no mode, and a layer script
 * that lost its executable bit is refused by layer discovery.
 */
export async function formatFilesKeepingModes(tree: Tree): Promise<void> {
  const modes = new Map<string, Mode>();
  for (const change of tree.listChanges()) {
    if (change.type !== 'DELETE' && change.options?.mode !== undefined) modes.set(change.path, change.options.mode);
  }
  await formatFiles(tree);
  for (const [file, mode] of modes) {
    if (tree.exists(file)) tree.changePermissions(file, mode);
  }
}
