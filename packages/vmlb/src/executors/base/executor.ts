import type { ExecutorContext } from '@nx/devkit';
import { rm } from 'node:fs/promises';
import * as path from 'node:path';
import { type BaseSource, defaultDownloadCache, importBase } from '../../lib/build/base-import';
import { publishLayerFile } from '../../lib/blob/chain';
import { openBlobStores } from '../../lib/blob/config';
import { reportFailure } from '../../lib/util/executor-errors';
import { withInterruptSignal } from '../../lib/util/interrupt';
import { manifestWithoutFiles, writeManifest } from '../../lib/inspect/layer-manifest';
import { makeBuildRecord } from '../../lib/cache-identity/build-record';
import { isSha256 } from '../../lib/cache-identity/digest';
import { manifestPathFor, refPathFor } from '../../lib/image/dist-layout';
import { IMAGE_CONFIG_FILE } from '../../lib/image/image-files';
import { checkPrerequisites } from '../../lib/build/prerequisites';
import type { BaseExecutorSchema } from './schema';
import { checkTargetDefaults } from '../../lib/cache-identity/target-defaults-guard';
import { type Qcow2Compat, checkQcow2Compat } from '../../lib/disk/qcow2';

export interface NormalizedBaseOptions {
  imageName: string;
  source: BaseSource;
  output: string;
  downloadCache: string;
  qcow2Compat?: Qcow2Compat;
}

export function normalizeOptions(options: BaseExecutorSchema, workspaceRoot: string, env: NodeJS.ProcessEnv = process.env): NormalizedBaseOptions {
  const { url, sha256, path: basePath, empty } = options.base;
  const kinds = [url, basePath, empty].filter((value) => value !== undefined).length;
  if (kinds !== 1) {
    throw new Error(`Image ${options.imageName}: base must have exactly one of url (with sha256), path or empty; got ${JSON.stringify(options.base)}.`);
  }
  let source: BaseSource;
  if (url !== undefined) {
    if (!sha256 || !isSha256(sha256, { anyCase: true })) {
      throw new Error(`Image ${options.imageName}: base.url needs base.sha256 (64 hexadecimal digits); got '${sha256 ?? ''}'.`);
    }
    source = { url, sha256: sha256.toLowerCase() };
  } else if (basePath !== undefined) {
    source = { path: basePath };
  } else {
    source = { empty: empty! };
  }
  return {
    imageName: options.imageName,
    source,
    output: path.resolve(workspaceRoot, options.output),
    downloadCache: options.downloadCache ? path.resolve(workspaceRoot, options.downloadCache) : defaultDownloadCache(env),
    qcow2Compat: checkQcow2Compat(options.qcow2Compat, `Image ${options.imageName}: --qcow2Compat`),
  };
}

export default async function baseExecutor(options: BaseExecutorSchema, context: ExecutorContext): Promise<{ success: boolean }> {
  return reportFailure(async () => {
    checkTargetDefaults(context);
    const normalized = normalizeOptions(options, context.root);
    checkPrerequisites(['qemu-img'], { fuse: false, disks: false });
    const log = (message: string) => console.log(message);
    const stores = options.blobs ? await openBlobStores(context.root) : undefined;
    // A ref is written last, once its blob is stored; an old one must not outlive a failed import.
    if (stores) await rm(refPathFor(normalized.output), { force: true });
    const manifestPath = manifestPathFor(normalized.output);
    const startedAt = Date.now();
    const imageRoot = context.projectName ? context.projectsConfigurations?.projects[context.projectName]?.root : undefined;
    const { digest, sha256 } = await importBase(normalized.source, normalized.output, {
      downloadCache: normalized.downloadCache,
      log,
      workspaceRoot: context.root,
      configFile: imageRoot ? path.posix.join(imageRoot, IMAGE_CONFIG_FILE) : `the ${IMAGE_CONFIG_FILE} of image ${normalized.imageName}`,
      // A failed import keeps the earlier base and the manifest that describes it.
      replaces: [manifestPath],
      qcow2Compat: normalized.qcow2Compat,
    });
    // The base has no files of its own to list; its manifest carries the build record.
    const build = await makeBuildRecord(normalized.output, { workspaceRoot: context.root, startedAt });
    await writeManifest(manifestPath, manifestWithoutFiles('base', build));
    if (stores) {
      const builtBy = `${context.projectName ?? `image-${normalized.imageName}`}:${context.targetName ?? 'base'}`;
      await withInterruptSignal((signal) => publishLayerFile(normalized.output, { sha256, digest, builtBy }, stores, { share: true, log, signal }));
    }
    console.log(`vmlb: base of image ${normalized.imageName} ready (digest ${digest.slice(0, 12)})`);
  });
}
