import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import type { ExecutorContext, ProjectGraph } from '@nx/devkit';
import { isCI } from '../../lib/util/ci';
import { nxDevkit } from '../../lib/util/nx-devkit';
import { resolveProjectOutputs } from '../../lib/build/project-outputs';
import { layerPosition } from '../../lib/build/layer-position';
import { checkBindSources } from '../../lib/build/bind-sources';
import { checkSecrets, secretsFromEnvironment } from '../../lib/build/build-secrets';
import { cacheMountsRoot } from '../../lib/build/cache-mounts';
import { readDigest } from '../../lib/cache-identity/digest';
import { digestPathFor, manifestPathFor } from '../../lib/image/dist-layout';
import { chainBlobsReachable, prepareLayerBuild, publishLayerFile } from '../../lib/blob/chain';
import { openBlobStores } from '../../lib/blob/config';
import { refPathFor } from '../../lib/image/dist-layout';
import { LocalLayerStore, noshareStoreKey, restoreNoshareLayer } from '../../lib/cache-identity/local-layer-store';
import { parseHints, SCRIPT_KINDS, type ScriptKind } from '../../lib/image/hints';
import { reportFailure } from '../../lib/util/executor-errors';
import { withInterruptSignal } from '../../lib/util/interrupt';
import { type LayerBuildPlan, buildLayer } from '../../lib/build/layer-build';
import { checkPrerequisites, layerBuildTools } from '../../lib/build/prerequisites';
import type { LayerExecutorSchema } from './schema';
import { checkTargetDefaults } from '../../lib/cache-identity/target-defaults-guard';
import { imageScriptEnv } from '../../lib/image/image-chain';
import { declaredEnvironment } from '../../lib/image/script-env';
import { checkQcow2Compat } from '../../lib/disk/qcow2';
import { PAUSE_ON_FAILURE, pausePhase } from '../../lib/util/pause-point';

/**
 * Options resolved once: absolute paths, script kind and hints read from
 * the script, and what a failing script leaves (VMLB_PAUSE_AT=failed: a
 * shell when someone can type in it, else held until interrupted).
 */
export function normalizeOptions(
  options: LayerExecutorSchema,
  workspaceRoot: string,
  env: NodeJS.ProcessEnv = process.env,
  graph?: ProjectGraph,
  terminal?: { stdinIsTTY: boolean; ci: boolean },
): LayerBuildPlan {
  const absolute = (file: string) => path.resolve(workspaceRoot, file);
  const kind = path.basename(options.script) as ScriptKind;
  if (!SCRIPT_KINDS.includes(kind)) {
    throw new Error(`Layer ${options.layer}: script '${options.script}' must be named build-layer or modify-disk.`);
  }
  const parent = absolute(options.parent);
  const output = absolute(options.output);
  // The parent is beside the output, or (a derived image's first layer) in a sibling image folder of the same dist folder.
  if (path.dirname(parent) !== path.dirname(output) && path.dirname(path.dirname(parent)) !== path.dirname(path.dirname(output))) {
    throw new Error(
      `Layer ${options.layer}: output ${options.output} must be in the same folder as its parent ${options.parent}, or in a sibling folder of the same dist folder, so the chain can use relative backing paths.`,
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
  const hints = parseHints(scriptText, options.script, kind);
  // Before the disk is touched: a bind source that has gone, or leads out of the workspace through a symlink.
  checkBindSources({ workspaceRoot, layerDir: absolute(options.layerDir) }, hints.bindMounts, options.script);
  const projectOutputs = resolveProjectOutputs(hints.projectOutputs, graph, workspaceRoot, options.script);
  return {
    workspaceRoot,
    imageName: options.imageName,
    layer: options.layer,
    layerDir: absolute(options.layerDir),
    script,
    kind,
    hints,
    parent,
    output,
    rootPartition: options.rootPartition,
    nbdDevice,
    projectOutputs,
    // The layer folder sits in the image folder, whose image.json declares them.
    scriptEnv: declaredEnvironment(imageScriptEnv(path.posix.dirname(options.layerDir), workspaceRoot), env),
    qcow2Compat: checkQcow2Compat(options.qcow2Compat, `Layer ${options.layer}: --qcow2Compat`),
    ...(hints.cacheMounts?.length ? { cacheMountsRoot: cacheMountsRoot(nxDevkit().cacheDir, env) } : {}),
    // Values are read now and checked once the layer is known to need building (a noshare layer restored needs none).
    ...(hints.secrets?.length ? { secrets: secretsFromEnvironment(hints.secrets, env, workspaceRoot) } : {}),
    keepFailed: pausePhase(env) === PAUSE_ON_FAILURE ? keepFailedAs(terminal ?? { stdinIsTTY: process.stdin.isTTY === true, ci: Boolean(isCI()) }) : undefined,
  };
}

/** What a failing script leaves: a shell when someone can type in it, else the sandbox held until interrupted. */
function keepFailedAs(terminal: { stdinIsTTY: boolean; ci: boolean }): 'shell' | 'held' {
  return terminal.stdinIsTTY && !terminal.ci ? 'shell' : 'held';
}

/** One layer: the noshare store first, else prepare (blob mode), build, publish, and keep a noshare layer in the store. */
export default async function layerExecutor(options: LayerExecutorSchema, context: ExecutorContext): Promise<{ success: boolean }> {
  return reportFailure(async () => {
    checkTargetDefaults(context);
    const plan = normalizeOptions(options, context.root, process.env, context.projectGraph);
    const log = (message: string) => console.log(message);
    const stores = options.blobs ? await openBlobStores(context.root) : undefined;
    const project = context.projectName ?? `${plan.imageName}-${plan.layer}`;
    // In blob mode Nx caches the ref, not the qcow2.
    const files = { file: stores ? refPathFor(plan.output) : plan.output, digestFile: digestPathFor(plan.output), manifestFile: manifestPathFor(plan.output) };
    const noshareKey = noshareStoreKey(plan);
    const noshareStore = noshareKey ? LocalLayerStore.inNxCacheDir(nxDevkit().cacheDir) : undefined;
    if (noshareStore && noshareKey) {
      const stillComplete = stores ? () => chainBlobsReachable(plan.output, stores, log) : undefined;
      if (await restoreNoshareLayer(noshareStore, noshareKey, { name: plan.layer, parent: plan.parent, files }, { log, stillComplete })) return;
    }

    checkSecrets(plan.secrets, { imageName: plan.imageName, layer: plan.layer, script: options.script });
    const shellTools = plan.keepFailed === 'shell' ? (['script'] as const) : [];
    checkPrerequisites([...layerBuildTools(plan.nbdDevice !== undefined), ...shellTools], { fuse: plan.nbdDevice === undefined });
    await withInterruptSignal(async (signal) => {
      if (stores) await prepareLayerBuild(plan.parent, plan.output, stores, { log, signal });
      const position = layerPosition(context.projectGraph, plan.imageName, plan.layer);
      console.log(
        `vmlb: layer ${position ? `${position} ` : ''}${plan.layer} of image ${plan.imageName}: in no cache, building (${plan.kind} on ${path.basename(plan.parent)})`,
      );
      const { digest, sha256 } = await buildLayer(plan, log, signal);
      if (stores) {
        // As the overlay names it: a bare name, or ../<image>/<layer>.qcow2 on another image's layer.
        const parent = path.relative(path.dirname(plan.output), plan.parent);
        const identity = { sha256, digest, parent, builtBy: `${project}:${context.targetName ?? 'build'}` };
        await publishLayerFile(plan.output, identity, stores, { share: !plan.hints.noshare, log, signal });
      }
    });

    if (noshareStore && noshareKey) {
      await noshareStore.save(noshareKey, project, files, await readDigest(digestPathFor(plan.parent)));
      log(`vmlb: ${plan.layer} is noshare: kept in this machine's layer store (${noshareStore.root}), never uploaded`);
    }
  });
}
