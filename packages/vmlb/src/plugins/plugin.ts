import { readdirSync, statSync } from 'node:fs';
import * as path from 'node:path';
import {
  AggregateCreateNodesError,
  type CreateNodes,
  type CreateNodesResult,
  type ProjectConfiguration,
  type TargetConfiguration,
  type TargetDependencyConfig,
  hashArray,
  logger,
} from '@nx/devkit';
import { calculateHashesForCreateNodes, PluginCache, workspaceDataDirectory } from '@nx/devkit/internal';
import { DEFAULT_DIST_DIR, ImageLayout, digestPathFor, manifestPathFor, snapshotPathFor } from '../lib/image/dist-layout';
import { blobModeSetting } from '../lib/blob/config';
import { describeHints } from '../lib/image/hints';
import { refPathFor } from '../lib/blob/layer-ref';
import { type ImageInfo, IMAGE_CONFIG_FILE, ImageDefinitionError, discoverImage } from '../lib/image/layer-discovery';
import { imageProjectName, layerProjectName } from '../lib/image/project-names';
import { vmlbCodeId } from '../lib/util/version';
import { LAYER_FORMAT, baseInputs, exportInputs, layerInputs, layerKeyOptions } from '../lib/cache-identity/task-key';
import { targetDefaultsProblem } from '../lib/cache-identity/target-defaults-guard';

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
}

/** The options that shape the inferred projects (the remote cache options do not). */
type NormalizedOptions = Required<Omit<VmlbPluginOptions, 'remoteCacheProbe' | 'remoteCacheProbeTimeout' | 'blobStore'>> & {
  /** Blob mode: from blobStore or VMLB_BLOB_STORE. */
  blobs: boolean;
};

/**
 * Every file that makes an image folder an image: its image.json, and the
 * layer scripts (so that a folder with layers but no image.json is reported
 * instead of silently ignored).
 */
export const IMAGE_FILES_GLOB = `images/*/{${IMAGE_CONFIG_FILE},*/build-layer,*/modify-disk}`;

/** What the plugin infers for one image folder; cached on disk keyed by the folder's content hash. */
interface ImageNodes {
  projects: Record<string, ProjectConfiguration>;
  warnings: string[];
}

export const createNodes: CreateNodes<VmlbPluginOptions> = [
  IMAGE_FILES_GLOB,
  async (files, rawOptions, context) => {
    const options = normalizeOptions(rawOptions);
    const imageRoots = groupFilesByImage(files);
    const roots = [...imageRoots.keys()];
    const contentHashes = await calculateHashesForCreateNodes(roots, { options, code: vmlbCodeId() }, context);
    const cache = new PluginCache<ImageNodes>(path.join(workspaceDataDirectory, `vmlb-${hashArray([JSON.stringify(options)])}.hash`));

    const results: Array<readonly [string, CreateNodesResult]> = [];
    const errors: Array<[string, Error]> = [];
    roots.forEach((imageRoot, index) => {
      const sourceFile = imageRoots.get(imageRoot)!;
      try {
        const key = hashArray([contentHashes[index], unhashedState(context.workspaceRoot, files, imageRoot)]);
        let nodes = cache.get(key);
        if (!nodes) {
          nodes = inferImageNodes(discoverImage(context.workspaceRoot, imageRoot), options);
          cache.set(key, nodes);
        }
        nodes.warnings.forEach((warning) => logger.warn(`vmlb: ${warning}`));
        results.push([sourceFile, { projects: nodes.projects }]);
      } catch (error) {
        // Each problem under the file or folder to fix (Nx prints that above the message).
        if (error instanceof ImageDefinitionError) error.problems.forEach(({ file, message }) => errors.push([file, new Error(message)]));
        else errors.push([sourceFile, error as Error]);
      }
    });
    cache.writeToDisk();

    findNameClashes(results).forEach((clash) => errors.push(clash));
    const defaultsProblem = targetDefaultsProblem(context.nxJsonConfiguration, results);
    if (defaultsProblem) logger.warn(`vmlb: ${defaultsProblem.message}`);
    if (errors.length) throw new AggregateCreateNodesError(errors, results);
    return results;
  },
];

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
    distDir,
    blobs: blobModeSetting(options?.blobStore, env) !== undefined,
  };
}

/** Maps each image folder to the file its projects are reported against (image.json when it exists). */
function groupFilesByImage(files: readonly string[]): Map<string, string> {
  const byImage = new Map<string, string>();
  for (const file of [...files].sort()) {
    const imageRoot = file.split('/').slice(0, 2).join('/');
    if (file === `${imageRoot}/${IMAGE_CONFIG_FILE}` || !byImage.has(imageRoot)) byImage.set(imageRoot, file);
  }
  return byImage;
}

/**
 * What decides the inferred projects but not the workspace's content hash of
 * the image folder, which covers file contents only: whether each script is
 * executable (one that lost its executable bit must be checked again), and
 * the image folder's subfolders (an empty layer folder holds no file to
 * hash, yet it must be reported).
 */
function unhashedState(workspaceRoot: string, files: readonly string[], imageRoot: string): string {
  const modes = files
    .filter((file) => file.startsWith(`${imageRoot}/`) && !file.endsWith(IMAGE_CONFIG_FILE))
    .map((file) => `${file}:${(statSync(path.join(workspaceRoot, file)).mode & 0o111) !== 0}`);
  const folders = readdirSync(path.join(workspaceRoot, imageRoot), { withFileTypes: true })
    .filter((entry) => entry.isDirectory() || entry.isSymbolicLink())
    .map((entry) => entry.name)
    .sort();
  return JSON.stringify({ modes, folders });
}

/** The Nx projects of one image: one per layer, chained, plus the image project. */
export function inferImageNodes(image: ImageInfo, options: NormalizedOptions): ImageNodes {
  const layout = new ImageLayout(image.name, options.distDir);
  const imageProject = imageProjectName(image.name);
  const projects: Record<string, ProjectConfiguration> = {};

  let parentFile = layout.base;
  let parentProject: string | undefined;
  for (const layer of image.layers) {
    const name = layerProjectName(image.name, layer.folder);
    const output = layout.layer(layer.folder);
    const hints = describeHints(layer.hints);
    const build: TargetConfiguration = {
      executor: 'vmlb:layer',
      // noshare layers are not Nx-cacheable (Nx would upload them to a remote
      // cache); their executor keeps them in a store on this machine instead.
      cache: !layer.hints.nocache && !layer.hints.noshare,
      dependsOn: [
        parentProject
          ? { target: options.buildTargetName, projects: [parentProject] }
          : { target: options.baseTargetName, projects: [imageProject] },
      ],
      inputs: layerInputs(layer.hints.rebuildEvery),
      outputs: [...chainFileOutputs(output, options), `{workspaceRoot}/${manifestPathFor(output)}`, `{workspaceRoot}/${snapshotPathFor(output)}`],
      options: {
        imageName: image.name,
        layer: layer.folder,
        layerDir: layer.dir,
        script: layer.script,
        parent: parentFile,
        output,
        ...(image.config.rootPartition !== undefined ? { rootPartition: image.config.rootPartition } : {}),
        ...layerKeyOptions(image.config.cacheSalt),
        ...blobOption(options),
      },
      metadata: {
        technologies: ['vmlb'],
        description:
          `Build layer ${layer.folder} of image ${image.name}: run ${layer.kind} ` +
          (layer.kind === 'build-layer' ? 'in a chroot of the image' : 'on the host against the disk') +
          ` into ${output}` +
          (hints.length ? ` (hints: ${hints.join(', ')})` : '') +
          (layer.hints.nocache
            ? '; nocache: rebuilt on every run'
            : layer.hints.noshare
              ? "; noshare: kept in this machine's layer store, never in a remote cache"
              : ''),
        help: { command: `npx nx run ${name}:${options.buildTargetName} --help`, example: { options: { nbd: '/dev/nbd0' } } },
      },
    };
    projects[layer.dir] = {
      name,
      root: layer.dir,
      projectType: 'library',
      tags: ['vmlb:layer', `vmlb:image:${image.name}`],
      implicitDependencies: parentProject ? [parentProject] : [],
      targets: { [options.buildTargetName]: build },
      metadata: { description: `Layer ${layer.folder} of image ${image.name} (${layer.kind})`, technologies: ['vmlb'] },
    };
    parentFile = output;
    parentProject = name;
  }

  const lastBuild = parentProject
    ? { target: options.buildTargetName, projects: [parentProject] }
    : { target: options.baseTargetName };
  // No chain top, no image.json testBoot settings here: Nx hashes every target
  // of the image project into its base import's key; the tasks find both at run time.
  const chainOptions = {
    imageName: image.name,
    imageRoot: image.root,
    distDir: options.distDir,
    ...blobOption(options),
  };
  projects[image.root] = {
    name: imageProject,
    root: image.root,
    projectType: 'application',
    tags: ['vmlb:image'],
    implicitDependencies: parentProject ? [parentProject] : [],
    metadata: {
      description: `VM image ${image.name}: base ${describeBase(image)}, ${image.layers.length} layer(s)`,
      technologies: ['vmlb'],
    },
    targets: {
      [options.baseTargetName]: {
        executor: 'vmlb:base',
        cache: true,
        inputs: baseInputs(IMAGE_CONFIG_FILE, image.config.base.kind === 'path' ? resolveBasePath(image) : undefined),
        outputs: [...chainFileOutputs(layout.base, options), `{workspaceRoot}/${manifestPathFor(layout.base)}`],
        options: {
          imageName: image.name,
          base: baseOption(image),
          output: layout.base,
          layerFormat: LAYER_FORMAT,
          ...blobOption(options),
        },
        metadata: {
          technologies: ['vmlb'],
          description: `Import the base disk of image ${image.name} (${describeBase(image)}) into ${layout.base}`,
          help: { command: `npx nx run ${imageProject}:${options.baseTargetName} --help`, example: { options: {} } },
        },
      },
      [options.buildTargetName]: {
        executor: 'vmlb:image',
        // Linking is instant; a flattened image belongs to the flatten target.
        cache: false,
        dependsOn: [lastBuild],
        options: { ...chainOptions, output: layout.image, flatten: false },
        metadata: {
          technologies: ['vmlb'],
          description: `Build every layer of image ${image.name} and link ${layout.image} to the last one (--flatten writes one standalone file instead)`,
          help: { command: `npx nx run ${imageProject}:${options.buildTargetName} --help`, example: { options: { flatten: true } } },
        },
      },
      [options.flattenTargetName]: {
        executor: 'vmlb:flatten',
        // Cached on the chain's digests and the options (Nx hashes them).
        // In blob mode an export would be one more multi-GB artifact in
        // Nx's cache and remote cache, which blob mode exists to avoid.
        cache: !options.blobs,
        dependsOn: [lastBuild],
        inputs: exportInputs(),
        outputs: [`{workspaceRoot}/${layout.dir}/export/{options.format}`],
        options: { ...chainOptions, outputDir: path.posix.join(layout.dir, 'export'), format: 'qcow2', layerFormat: LAYER_FORMAT },
        metadata: {
          technologies: ['vmlb'],
          description: `Write image ${image.name} as one standalone disk file: qcow2, raw, vmdk, vhdx, vdi, vpc or ova, with a .sha256 (into ${layout.dir}/export/<format>/)`,
          help: { command: `npx nx run ${imageProject}:${options.flattenTargetName} --help`, example: { options: { format: 'vmdk' } } },
        },
      },
      [options.testBootTargetName]: {
        executor: 'vmlb:test-boot',
        cache: false,
        dependsOn: [lastBuild],
        options: { ...chainOptions, cloudInitDir: path.posix.join(image.root, 'test-boot') },
        metadata: {
          technologies: ['vmlb'],
          description: `Boot image ${image.name} under qemu without changing it: on the console when interactive, or --check for a scripted pass/fail`,
          help: {
            command: `npx nx run ${imageProject}:${options.testBootTargetName} --help`,
            example: { options: { check: true, ssh: 'systemctl is-system-running --wait' } },
          },
        },
      },
      [options.layersTargetName]: {
        executor: 'vmlb:layers',
        cache: false,
        options: { imageName: image.name, imageRoot: image.root, distDir: options.distDir, ...blobOption(options) },
        metadata: {
          technologies: ['vmlb'],
          description: `List the layers of image ${image.name}: kind, hints, cache state and sizes (builds nothing)`,
          help: { command: `npx nx run ${imageProject}:${options.layersTargetName} --help`, example: { options: { json: true } } },
        },
      },
      [options.diffTargetName]: {
        executor: 'vmlb:diff',
        cache: false,
        options: { imageName: image.name, imageRoot: image.root, distDir: options.distDir, ...blobOption(options) },
        metadata: {
          technologies: ['vmlb'],
          description: `Compare image ${image.name} at two layers (default: the last one and the one below): files, packages, or a shell on both (read-only)`,
          help: {
            command: `npx nx run ${imageProject}:${options.diffTargetName} --help`,
            example: { options: { from: image.layers[0]?.folder ?? 'base', to: image.layers[image.layers.length - 1]?.folder ?? 'base' } },
          },
        },
      },
      ...(options.blobs ? blobTargets(imageProject, chainOptions, lastBuild) : {}),
    },
  };
  return { projects, warnings: image.warnings };
}

/** Outputs Nx caches for a file of the chain: the qcow2, or in blob mode only its ref; always the digest. */
function chainFileOutputs(qcow2: string, options: NormalizedOptions): string[] {
  return [`{workspaceRoot}/${options.blobs ? refPathFor(qcow2) : qcow2}`, `{workspaceRoot}/${digestPathFor(qcow2)}`];
}

/** In the task hash, so that switching blob mode on or off never restores the other mode's outputs. */
function blobOption(options: NormalizedOptions): { blobs?: true } {
  return options.blobs ? { blobs: true } : {};
}

/** The image targets that exist only in blob mode. */
function blobTargets(
  imageProject: string,
  chainOptions: { imageName: string; imageRoot: string; distDir: string },
  lastBuild: TargetDependencyConfig,
): Record<string, TargetConfiguration> {
  const { imageName } = chainOptions;
  return {
    pull: {
      executor: 'vmlb:pull',
      cache: false,
      dependsOn: [lastBuild],
      options: { imageName, imageRoot: chainOptions.imageRoot, distDir: chainOptions.distDir },
      metadata: {
        technologies: ['vmlb'],
        description: `Put every layer file of image ${imageName} in place in dist/ (blob mode): linked from this machine's blob cache, or downloaded from the blob store`,
        help: { command: `npx nx run ${imageProject}:pull --help`, example: { options: {} } },
      },
    },
    gc: {
      executor: 'vmlb:gc',
      cache: false,
      options: { keep: 20 },
      metadata: {
        technologies: ['vmlb'],
        description: `Remove blobs from this machine's blob cache that no ref in this workspace or its Nx cache names, except the most recently used`,
        help: { command: `npx nx run ${imageProject}:gc --help`, example: { options: { keep: 5, dryRun: true } } },
      },
    },
  };
}

function baseOption(image: ImageInfo): Record<string, string> {
  const base = image.config.base;
  switch (base.kind) {
    case 'url':
      return { url: base.url, sha256: base.sha256 };
    case 'path':
      return { path: resolveBasePath(image) };
    case 'empty':
      return { empty: base.size };
  }
}

/** A base path as the executor and the hash see it: relative to the workspace, or absolute. */
function resolveBasePath(image: ImageInfo): string {
  const base = image.config.base;
  if (base.kind !== 'path') throw new Error('not a path base');
  return path.posix.isAbsolute(base.path) ? base.path : path.posix.normalize(path.posix.join(image.root, base.path));
}

function describeBase(image: ImageInfo): string {
  const base = image.config.base;
  switch (base.kind) {
    case 'url':
      return `download of ${base.url}`;
    case 'path':
      return `local disk ${resolveBasePath(image)}`;
    case 'empty':
      return `blank ${base.size} disk`;
  }
}

/**
 * Two images can never share a folder, hence never a name; but a layer
 * project (`<image>-<NN_layer>`) can coincide with the image project of an
 * image named `image` (`image-<NN_layer>`). Nx would merge or reject them
 * with a confusing message; say what clashes and how to fix it.
 */
function findNameClashes(results: Array<readonly [string, CreateNodesResult]>): Array<[string, Error]> {
  const owners = new Map<string, string>();
  const clashes: Array<[string, Error]> = [];
  for (const [file, result] of results) {
    for (const [root, project] of Object.entries(result.projects ?? {})) {
      const name = project.name!;
      const other = owners.get(name);
      if (other) {
        clashes.push([
          file,
          new Error(`Project name '${name}' is inferred for both ${other} and ${root}. Rename one of the image folders.`),
        ]);
      } else {
        owners.set(name, root);
      }
    }
  }
  return clashes;
}
