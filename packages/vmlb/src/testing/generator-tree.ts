import { chmodSync } from 'node:fs';
import type { Tree } from '@nx/devkit';
import { createTreeWithEmptyWorkspace } from '@nx/devkit/testing';
import type { TempWorkspace } from './temp-workspace';

/** An empty Nx workspace tree with no formatter: what a generator spec runs generators in. */
export function emptyTree(): Tree {
  return createTreeWithEmptyWorkspace({ formatter: 'none' });
}

/** A file a generator wrote into the tree; throws, naming it, when it was not written. */
export function read(tree: Tree, file: string): string {
  const content = tree.read(file, 'utf-8');
  if (content === null) throw new Error(`${file} was not written`);
  return content;
}

/** The mode a generator gave a file it wrote (e.g. `'755'` for a script), or undefined. */
export function modeOf(tree: Tree, file: string): unknown {
  return tree.listChanges().find((change) => change.path === file)?.options?.mode;
}

/** Writes the tree's changes into a TempWorkspace, modes included, as `nx g` does. */
export function flushTree(tree: Tree, workspace: TempWorkspace): void {
  for (const change of tree.listChanges()) {
    if (change.type === 'DELETE' || !change.content) continue;
    const file = workspace.write(change.path, change.content);
    if (change.options?.mode !== undefined) chmodSync(file, change.options.mode);
  }
}
