import * as path from 'node:path';
import { blobModeSetting } from '../lib/blob/config';
import { DEFAULT_DIST_DIR, digestPathFor, refPathFor } from '../lib/image/dist-layout';

/** Options of the vmlb entry in nx.json's `plugins`. */
export interface VmlbPluginOptions {
  /** Target that builds a layer, and (on the image project) the whole image. Default `build`. */
  buildTargetName?: string;
  /** Image-project target that imports the base disk. Default `base`. */
  baseTargetName?: string;
  /** Image-project target that writes one standalone disk file. Default `flatten`. */
  flattenTargetName?: string;
  /** Image-project target that boots the image under qemu. Default `test-boot`. */
  testBootTargetName?: string;
  /** Image-project target that lists the layers. Default `layers`. */
  layersTargetName?: string;
  /** Image-project target that compares the image at two layers. Default `diff`. */
  diffTargetName?: string;
  /** Image-project target that opens a shell in a built layer. Default `shell`. */
  shellTargetName?: string;
  /** Workspace-relative folder for build outputs. Default `dist/images`. */
  distDir?: string;
  /**
   * Before each run, check that the self-hosted remote cache
   * (NX_SELF_HOSTED_REMOTE_CACHE_SERVER) answers, and run with the local
   * cache only when it does not. Default true.
   */
  remoteCacheProbe?: boolean;
  /** How long that check waits for an answer, in milliseconds. Default 3000. */
  remoteCacheProbeTimeout?: number;
  /**
   * Blob mode: layer files go to a content-addressed store and Nx caches
   * only small refs. `file:///path`, `s3://bucket/prefix`, or `local` (this
   * machine's blob cache only). VMLB_BLOB_STORE overrides it. Default: off.
   */
  blobStore?: string;
  /**
   * In CI (Nx's isCI), stream every task's output live, as
   * `--outputStyle=stream` does, unless the run chose an output style.
   * Default true.
   */
  streamOutputInCI?: boolean;
}

/** The options that shape the inferred projects (the remote cache options do not). */
export type NormalizedOptions = Required<Omit<VmlbPluginOptions, 'remoteCacheProbe' | 'remoteCacheProbeTimeout' | 'blobStore' | 'streamOutputInCI'>> & {
  /** Blob mode: from blobStore or VMLB_BLOB_STORE. */
  blobs: boolean;
};

/** The plugin options with their defaults; `env` for VMLB_BLOB_STORE. */
export function normalizeOptions(options: VmlbPluginOptions | undefined, env: NodeJS.ProcessEnv = process.env): NormalizedOptions {
  const distDir = path.posix.normalize((options?.distDir ?? DEFAULT_DIST_DIR).replace(/\\/g, '/')).replace(/\/$/, '');
  if (path.posix.isAbsolute(distDir) || distDir.startsWith('..')) {
    throw new Error(`vmlb plugin option distDir '${options?.distDir}' must be a folder inside the workspace, e.g. 'dist/images'.`);
  }
  return {
    buildTargetName: options?.buildTargetName ?? 'build',
    baseTargetName: options?.baseTargetName ?? 'base',
    flattenTargetName: options?.flattenTargetName ?? 'flatten',
    testBootTargetName: options?.testBootTargetName ?? 'test-boot',
    layersTargetName: options?.layersTargetName ?? 'layers',
    diffTargetName: options?.diffTargetName ?? 'diff',
    shellTargetName: options?.shellTargetName ?? 'shell',
    distDir,
    blobs: blobModeSetting(options?.blobStore, env) !== undefined,
  };
}

/** Outputs Nx caches for a file of the chain: the qcow2, or in blob mode only its ref; always the digest. */
export function chainFileOutputs(qcow2: string, options: NormalizedOptions): string[] {
  return [`{workspaceRoot}/${options.blobs ? refPathFor(qcow2) : qcow2}`, `{workspaceRoot}/${digestPathFor(qcow2)}`];
}

/** In the task hash, so that switching blob mode on or off never restores the other mode's outputs. */
export function blobOption(options: NormalizedOptions): { blobs?: true } {
  return options.blobs ? { blobs: true } : {};
}
