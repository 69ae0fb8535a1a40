import type { CreateNodesContext, CreateNodesResult } from '@nx/devkit';
import { TempWorkspace } from './temp-workspace';

/** What createNodes returns for a batch of files. */
export type NodesResults = Array<readonly [string, CreateNodesResult]>;

/**
 * The plugin's createNodes (from the package's entry), with its inference cache in a throwaway folder:
 * the plugin keeps that cache in Nx's workspace data folder, which Nx resolves
 * when it is first imported, so the variable is set before the require.
 * Call `remove` in afterAll.
 */
export function pluginUnderTest() {
  const dataDir = new TempWorkspace();
  process.env.NX_WORKSPACE_DATA_DIRECTORY = dataDir.root;
  // Through the package's entry, as Nx loads it: its createNodes loads plugins/plugin when called.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { createNodes } = require('../index') as typeof import('../index');
  return {
    createNodes,
    /** Runs createNodes over `files` of the workspace at `context.workspaceRoot`. */
    infer: (files: string[], options: object, context: CreateNodesContext) => createNodes[1](files, options, context) as Promise<NodesResults>,
    remove: () => dataDir.remove(),
  };
}
