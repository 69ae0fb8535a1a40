import type { PreTasksExecution } from '@nx/devkit';
import { streamOutputInCI } from './ci-output';
import type { VmlbPluginOptions } from './options';
import { guardRemoteCache } from './remote-cache-guard';

/** Before Nx runs any task: live output in CI, then the remote cache check. */
export const preTasksExecution: PreTasksExecution<VmlbPluginOptions> = async (options, context) => {
  streamOutputInCI(options, context.argv);
  await guardRemoteCache(options, context);
};
