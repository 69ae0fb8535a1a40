import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import * as path from 'node:path';
import { cacheDir, type ExecutorContext } from '@nx/devkit';
import { checkBindSources } from '../../lib/build/chroot';
import { readDigest } from '../../lib/cache-identity/digest';
import { digestPathFor, manifestPathFor } from '../../lib/image/dist-layout';
import { type BlobStores, BlobMissingError, materialiseChain, publishLayerFile } from '../../lib/blob/chain';
import { openBlobStores } from '../../lib/blob/config';
import { refPathFor } from '../../lib/blob/layer-ref';
import { type LayerFiles, LocalLayerStore } from '../../lib/cache-identity/local-layer-store';
import { parseHints, SCRIPT_KINDS, type ScriptKind } from '../../lib/image/hints';
import { reportFailure } from '../../lib/util/executor-errors';
import { withInterruptSignal } from '../../lib/util/interrupt';
import { type LayerBuildPlan, buildLayer } from '../../lib/build/layer-build';
import { checkPrerequisites, layerBuildTools } from '../../lib/build/prerequisites';
import type { LayerExecutorSchema } from './schema';
import { checkTargetDefaults } from '../../lib/cache-identity/target-defaults-guard';

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
  const hints = parseHints(scriptText, options.script, kind);
  // Before the disk is touched: a bind source that has gone, or leads out of the layer folder through a symlink.
  checkBindSources(absolute(options.layerDir), hints.bindMounts, options.script);
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
  };
}

export default async function layerExecutor(options: LayerExecutorSchema, context: ExecutorContext): Promise<{ success: boolean }> {
  return reportFailure(async () => {
    checkTargetDefaults(context);
    const plan = normalizeOptions(options, context.root);
    const log = (message: string) => console.log(message);
    const stores = options.blobs ? await openBlobStores(context.root) : undefined;
    // In blob mode Nx caches the ref, not the qcow2.
    const cachedFiles = {
      file: stores ? refPathFor(plan.output) : plan.output,
      digestFile: digestPathFor(plan.output),
      manifestFile: manifestPathFor(plan.output),
    };
    const project = context.projectName ?? `${plan.imageName}-${plan.layer}`;
    const localStoreKey = noshareStoreKey(plan);
    const store = localStoreKey ? LocalLayerStore.inNxCacheDir(cacheDir) : undefined;
    if (store && localStoreKey && (await restoreFromLocalStore(store, localStoreKey, plan, cachedFiles, stores, log))) return;

    checkPrerequisites(layerBuildTools(plan.nbdDevice !== undefined), { fuse: plan.nbdDevice === undefined });
    await withInterruptSignal(async (signal) => {
      if (stores) {
        await materialiseChain(plan.parent, stores, { log, signal });
        // A ref is written last, once its blob is stored; an old one must not outlive a failed rebuild.
        await rm(refPathFor(plan.output), { force: true });
      }
      console.log(`vmlb: building layer ${plan.layer} of image ${plan.imageName} (${plan.kind}) on ${path.basename(plan.parent)}`);
      const { digest, sha256 } = await buildLayer(plan, log, signal);
      if (stores) {
        const builtBy = `${project}:${context.targetName ?? 'build'}`;
        await publishLayerFile(plan.output, { sha256, digest, parent: path.basename(plan.parent), builtBy }, stores, { share: !plan.hints.noshare, log, signal });
      }
    });

    if (store && localStoreKey) {
      await store.save(localStoreKey, project, cachedFiles, await readDigest(digestPathFor(plan.parent)));
      log(`vmlb: ${plan.layer} is noshare: kept in this machine's layer store (${store.root}), never uploaded`);
    }
  });
}

/**
 * The key of a noshare layer in the local store: the task hash Nx computed
 * for it (noshare layers are not Nx-cacheable, but Nx hashes them from the
 * same inputs). None when the layer is nocache, is not noshare, or the run
 * skips caching (`--skip-nx-cache`, under which Nx computes no hash).
 */
export function noshareStoreKey(plan: Pick<LayerBuildPlan, 'hints'>, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (!plan.hints.noshare || plan.hints.nocache) return undefined;
  if (env.NX_SKIP_NX_CACHE === 'true') return undefined;
  return env.NX_TASK_HASH || undefined;
}

async function restoreFromLocalStore(
  store: LocalLayerStore,
  key: string,
  plan: LayerBuildPlan,
  cachedFiles: LayerFiles,
  stores: BlobStores | undefined,
  log: (message: string) => void,
): Promise<boolean> {
  // Without its parent the entry cannot be checked; the build reports the missing parent.
  const parentDigest = await readDigest(digestPathFor(plan.parent)).catch(() => undefined);
  if (!parentDigest) return false;
  const { outcome, entry } = await store.restore(key, cachedFiles, parentDigest);
  if (outcome === 'miss' || !entry) return false;
  if (stores) {
    // The ref is back; its blob must still be in this machine's blob cache (a noshare blob is nowhere else).
    try {
      await materialiseChain(plan.output, stores, { log });
    } catch (error) {
      if (!(error instanceof BlobMissingError)) throw error;
      log(`vmlb: ${plan.layer} is noshare and its stored ref names a blob this machine no longer has; building it again`);
      return false;
    }
  }
  log(
    `vmlb: ${plan.layer} is noshare: ${outcome === 'restored' ? 'restored from' : 'already in dist/, matching'} this machine's layer store ` +
      `(task hash ${key}, digest ${entry.digest.slice(0, 12)}); not rebuilt, never uploaded`,
  );
  return true;
}
