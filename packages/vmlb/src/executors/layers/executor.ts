import type { ExecutorContext } from '@nx/devkit';
import type { LayersExecutorSchema } from './schema';

/**
 * The target is inferred for every image so that its options are visible
 * (`nx show project`, `--help`); this version of vmlb does not run it yet.
 */
export default async function layersExecutor(options: LayersExecutorSchema, context: ExecutorContext): Promise<{ success: boolean }> {
  console.error(`vmlb: the layers target of image ${options.imageName} (${context.projectName}) is not available in this version of vmlb.`);
  return { success: false };
}
