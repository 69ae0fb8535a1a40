import type { ExecutorContext } from '@nx/devkit';
import type { FlattenExecutorSchema } from './schema';

/**
 * The target is inferred for every image so that its options are visible
 * (`nx show project`, `--help`); this version of vmlb does not run it yet.
 */
export default async function flattenExecutor(options: FlattenExecutorSchema, context: ExecutorContext): Promise<{ success: boolean }> {
  console.error(`vmlb: the flatten target of image ${options.imageName} (${context.projectName}) is not available in this version of vmlb.`);
  return { success: false };
}
