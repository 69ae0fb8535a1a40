import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import type { ExecutorContext } from '@nx/devkit';
import { parseHints, SCRIPT_KINDS, type ScriptKind } from '../../lib/hints';
import { reportFailure } from '../../lib/executor-errors';
import { withInterruptSignal } from '../../lib/interrupt';
import { type LayerBuildPlan, buildLayer } from '../../lib/layer-build';
import { checkPrerequisites, layerBuildTools } from '../../lib/prerequisites';
import type { LayerExecutorSchema } from './schema';

/** Options resolved once: absolute paths, script kind and hints read from the script. */
export function normalizeOptions(options: LayerExecutorSchema, workspaceRoot: string, env: NodeJS.ProcessEnv = process.env): LayerBuildPlan {
  const absolute = (file: string) => path.resolve(workspaceRoot, file);
  const kind = path.basename(options.script) as ScriptKind;
  if (!SCRIPT_KINDS.includes(kind)) {
    throw new Error(`Layer ${options.layer}: script '${options.script}' must be named build-layer or modify-disk.`);
  }
  const parent = absolute(options.parent);
  const output = absolute(options.output);
  if (path.dirname(parent) !== path.dirname(output)) {
    throw new Error(
      `Layer ${options.layer}: output ${options.output} must be in the same folder as its parent ${options.parent}, so the chain can use relative backing paths.`,
    );
  }
  const nbdDevice = options.nbd ?? (env.VMLB_NBD || undefined);
  if (nbdDevice !== undefined && !/^\/dev\/nbd[0-9]+$/.test(nbdDevice)) {
    throw new Error(`--nbd '${nbdDevice}' is not an nbd device; use e.g. /dev/nbd0.`);
  }
  const script = absolute(options.script);
  let scriptText: string;
  try {
    scriptText = readFileSync(script, 'utf8');
  } catch {
    throw new Error(`Layer ${options.layer} of image ${options.imageName}: its script ${options.script} cannot be read.`);
  }
  return {
    imageName: options.imageName,
    layer: options.layer,
    layerDir: absolute(options.layerDir),
    script,
    kind,
    hints: parseHints(scriptText, options.script, kind),
    parent,
    output,
    rootPartition: options.rootPartition,
    nbdDevice,
  };
}

export default async function layerExecutor(options: LayerExecutorSchema, context: ExecutorContext): Promise<{ success: boolean }> {
  return reportFailure(async () => {
    const plan = normalizeOptions(options, context.root);
    checkPrerequisites(layerBuildTools(plan.nbdDevice !== undefined), { fuse: plan.nbdDevice === undefined });
    console.log(`vmlb: building layer ${plan.layer} of image ${plan.imageName} (${plan.kind}) on ${path.basename(plan.parent)}`);
    await withInterruptSignal((signal) => buildLayer(plan, (message) => console.log(message), signal));
  });
}
