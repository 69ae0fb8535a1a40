import type { ExecutorContext } from '@nx/devkit';
import { type SbomPlan, sbomPlan, writeImageSbom } from '../../lib/inspect/image-sbom';
import { reportFailure } from '../../lib/util/executor-errors';
import type { SbomExecutorSchema } from './schema';

/** Options resolved once: the output path, the distribution, the document's time (SOURCE_DATE_EPOCH). */
export function normalizeOptions(options: SbomExecutorSchema, workspaceRoot: string, env: NodeJS.ProcessEnv = process.env): SbomPlan {
  return sbomPlan(options, workspaceRoot, env);
}

/** The image's SPDX document from its chain's layer records. */
export default async function sbomExecutor(options: SbomExecutorSchema, context: ExecutorContext): Promise<{ success: boolean }> {
  return reportFailure(() =>
    writeImageSbom(normalizeOptions(options, context.root), context.root, context.projectsConfigurations?.projects, (line) => console.log(line)),
  );
}
