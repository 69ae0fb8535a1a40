import * as path from 'node:path';
import type { TargetConfiguration } from '@nx/devkit';
import type { BindMountHint } from '../image/hints';
import type { ImageConfig } from '../image/image-config';
import { keyedEnvDefaults, keyedEnvNames } from '../image/script-env';
import { shellQuote } from '../util/shell-quote';

/** One entry of a target's inputs. */
type Input = NonNullable<TargetConfiguration['inputs']>[number];

/**
 * What enters the Nx task hash of a layer, a base import and an export:
 * the one place that decides it (docs/layer-lifecycle.md, "What goes into
 * a layer's cache key", lists each part and where it is added).
 *
 * Nx adds to every task's hash, whatever a plugin says: nx.json,
 * .gitignore, .nxignore, the root tsconfig's compilerOptions, the
 * NX_CLOUD_ENCRYPTION_KEY variable, and the target configurations of the
 * task's project. Everything else is chosen here.
 */

/**
 * The layer format: bumped by hand when a change in vmlb changes the bytes
 * a build writes for the same inputs. It replaces the package version,
 * which changed every layer's key on every release.
 */
export const LAYER_FORMAT = 1;

/** Layer scripts run in the image, not in node_modules: no npm package is part of a key (Nx would hash the whole lockfile). */
const NO_NPM_PACKAGES: Input = { externalDependencies: [] };

/** The parent chain, through its small digest files; transitive, since an overlay records its parent's name, not its bytes. */
const PARENT_CHAIN_DIGESTS: Input = { dependentTasksOutputFiles: '**/*.digest', transitive: true };

/**
 * The bytes of the other projects' outputs a layer ships (`# project-output`):
 * every output of its direct dependencies but those in vmlb's dist folder
 * (the parent layer's, covered by its digest). Content, not the producing
 * task's hash, so an app rebuilt to identical bytes leaves the layer a hit.
 */
export function projectOutputFiles(distDir: string): Input {
  return { dependentTasksOutputFiles: `!${distDir}/**`, transitive: false };
}

/** Seconds since the epoch, from VMLB_NOW when set (tests move the clock with it). */
const NOW_SECONDS = '${VMLB_NOW:-$(date -u +%s)}';

/** What a layer's key holds besides its folder and its parent chain. */
export interface LayerKeyParts {
  /** `# rebuild-every`, in seconds. */
  rebuildEverySeconds?: number;
  /** The dist folder, when the layer ships other projects' outputs (`# project-output`). */
  shipsOutputsOutside?: string;
  /** Workspace-relative read-only bind sources outside the layer folder (`bindSourcesOutside`). */
  bindSources?: readonly string[];
  /** image.json's `env`: the variables declared with `"key": true` enter as `{ "env": NAME }` inputs. */
  env?: ImageConfig['env'];
}

/** The inputs of a layer's build target. */
export function layerInputs(parts: LayerKeyParts = {}): Input[] {
  return [
    '{projectRoot}/**/*',
    PARENT_CHAIN_DIGESTS,
    NO_NPM_PACKAGES,
    ...(parts.rebuildEverySeconds !== undefined ? [rebuildPeriodInput(parts.rebuildEverySeconds)] : []),
    ...(parts.shipsOutputsOutside !== undefined ? [projectOutputFiles(parts.shipsOutputsOutside)] : []),
    ...(parts.bindSources ?? []).flatMap(bindSourceInputs),
    ...keyedEnvNames(parts.env ?? {}).map((name): Input => ({ env: name })),
  ];
}

/**
 * The read-only bind sources of a layer that lie outside its folder
 * (`# chroot-bind-mount ../common /opt/common`), workspace-relative: their
 * files are the layer's input as much as its folder's are. Read-write
 * sources are not: what a script writes there is no part of the layer, and
 * keying it would change the key with every build that writes.
 */
export function bindSourcesOutside(layerDir: string, bindMounts: readonly BindMountHint[]): string[] {
  const sources = bindMounts
    .filter((mount) => !mount.readWrite)
    .map((mount) => path.posix.normalize(path.posix.join(layerDir, mount.source)))
    .filter((source) => source !== layerDir && !source.startsWith(`${layerDir}/`));
  return [...new Set(sources)];
}

/**
 * A bind source's files: the path itself when it is a file, everything
 * under it when it is a folder. Both inputs, so that the key follows the
 * source whichever it is (the one that matches nothing adds nothing), also
 * when a file becomes a folder.
 */
function bindSourceInputs(source: string): Input[] {
  return [`{workspaceRoot}/${source}`, `{workspaceRoot}/${source}/**/*`];
}

/**
 * `# rebuild-every <period>`: the number of the current period since the
 * epoch (UTC), so the key changes once a period, at the same moment on
 * every machine, and CI and laptops still share within it.
 */
export function rebuildPeriodInput(periodSeconds: number): Input {
  return { runtime: `echo "rebuild period $(( ${NOW_SECONDS} / ${periodSeconds} )) of ${periodSeconds} s"` };
}

/**
 * The options of a layer target that exist only to be part of its key:
 * the layer format, image.json's cacheSalt, and the defaults of its keyed
 * `env` variables (a script gets the default when the build's environment
 * has no value, so the default decides the bytes as much as the value).
 * Variables declared with `"key": false` are in neither, so declaring one
 * changes no key; the layer task reads them from image.json when it runs.
 */
export function layerKeyOptions(config: Pick<ImageConfig, 'cacheSalt' | 'env' | 'qcow2Compat'>): {
  layerFormat: number;
  cacheSalt?: string;
  keyedEnvDefaults?: Record<string, string>;
  qcow2Compat?: ImageConfig['qcow2Compat'];
} {
  const defaults = keyedEnvDefaults(config.env ?? {});
  return {
    layerFormat: LAYER_FORMAT,
    ...(config.cacheSalt !== undefined ? { cacheSalt: config.cacheSalt } : {}),
    ...(Object.keys(defaults).length ? { keyedEnvDefaults: defaults } : {}),
    ...qcow2CompatOption(config),
  };
}

/**
 * image.json's qcow2Compat as an option of the targets that write qcow2
 * files (layers, the base import, exports, a flattened build): it changes
 * their bytes, so it is part of their keys. Absent when not set, so that
 * images without it keep their keys.
 */
export function qcow2CompatOption(config: Pick<ImageConfig, 'qcow2Compat'>): { qcow2Compat?: ImageConfig['qcow2Compat'] } {
  return config.qcow2Compat !== undefined ? { qcow2Compat: config.qcow2Compat } : {};
}

/**
 * The inputs of an image's base import: image.json's `base` only, and for
 * a local disk its size and modification time (hashing a multi-GB disk on
 * every run would cost more than it saves).
 */
export function baseInputs(imageConfigFile: string, localBasePath?: string): Input[] {
  return [
    { json: `{projectRoot}/${imageConfigFile}`, fields: ['base'] },
    NO_NPM_PACKAGES,
    ...(localBasePath !== undefined ? [{ runtime: `stat -L -c '%s %Y' ${shellQuote(localBasePath)}` }] : []),
  ];
}

/** The inputs of an export (flatten): the chain's digests; the format and other options enter as options. */
export function exportInputs(): Input[] {
  return [PARENT_CHAIN_DIGESTS, NO_NPM_PACKAGES];
}
