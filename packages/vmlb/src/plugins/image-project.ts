import * as path from 'node:path';
import type { ProjectConfiguration, TargetConfiguration, TargetDependencyConfig } from '@nx/devkit';
import { LAYER_FORMAT, baseInputs, exportInputs, qcow2CompatOption } from '../lib/cache-identity/task-key';
import { type ImageLayout, manifestPathFor } from '../lib/image/dist-layout';
import { type ImageInfo } from '../lib/image/layer-discovery';
import { IMAGE_CONFIG_FILE } from '../lib/image/image-files';
import { imageProjectName } from '../lib/image/project-names';
import { type NormalizedOptions, blobOption, chainFileOutputs } from './options';
import { targetMetadata } from './target-metadata';

/** The options by which an image target finds the image's chain when it runs (lib/image/image-chain). */
interface ChainOptions {
  imageName: string;
  imageRoot: string;
  distDir: string;
  blobs?: true;
}

/**
 * The project of a whole image: its base import, the build that links the
 * image, the export, test boot, listing and diff. `lastLayer` is the project
 * of the top layer (none when the image has no layers).
 */
export function imageProject(image: ImageInfo, layout: ImageLayout, lastLayer: string | undefined, options: NormalizedOptions): ProjectConfiguration {
  const project = imageProjectName(image.name);
  const lastBuild: TargetDependencyConfig = lastLayer ? { target: options.buildTargetName, projects: [lastLayer] } : { target: options.baseTargetName };
  // A derived image imports no base disk: its chain starts on another image's layer (lastLayer's chain).
  const derived = image.config.base.kind === 'image';
  // No chain top, no image.json testBoot settings here: Nx hashes every target
  // of the image project into its base import's key; the tasks find both at run time.
  const chain: ChainOptions = { imageName: image.name, imageRoot: image.root, distDir: options.distDir, ...blobOption(options) };
  const metadata = (target: string, description: string, example: Record<string, unknown>) => targetMetadata(description, project, target, example);
  const targets: Record<string, TargetConfiguration> = {
    ...(derived ? {} : { [options.baseTargetName]: baseTarget(image, layout, options, metadata) }),
    [options.buildTargetName]: {
      executor: 'vmlb:image',
      // Linking is instant; a flattened image belongs to the flatten target.
      cache: false,
      dependsOn: [lastBuild],
      options: { ...chain, output: layout.image, flatten: false, ...qcow2CompatOption(image.config) },
      metadata: metadata(
        options.buildTargetName,
        `Build every layer of image ${image.name} and link ${layout.image} to the last one (--flatten writes one standalone file instead)`,
        { flatten: true },
      ),
    },
    [options.flattenTargetName]: {
      executor: 'vmlb:flatten',
      // In blob mode an export would be one more multi-GB artifact in Nx's
      // cache and remote cache, which blob mode exists to avoid.
      cache: !options.blobs,
      dependsOn: [lastBuild],
      inputs: exportInputs(),
      // The export of the whole image (<image>.<ext> and its .sha256), or with --upTo the folder named as it was given, never both.
      outputs: [`{workspaceRoot}/${layout.dir}/export/{options.format}/{options.upTo ?? {options.imageName}.*}`],
      options: { ...chain, outputDir: path.posix.join(layout.dir, 'export'), format: 'qcow2', layerFormat: LAYER_FORMAT, ...qcow2CompatOption(image.config) },
      metadata: metadata(
        options.flattenTargetName,
        `Write image ${image.name} as one standalone disk file: qcow2, raw, vmdk, vhdx, vdi, vpc or ova, with a .sha256 (into ${layout.dir}/export/<format>/)`,
        { format: 'vmdk' },
      ),
    },
    [options.testBootTargetName]: {
      executor: 'vmlb:test-boot',
      cache: false,
      dependsOn: [lastBuild],
      options: { ...chain, cloudInitDir: path.posix.join(image.root, 'test-boot') },
      metadata: metadata(
        options.testBootTargetName,
        `Boot image ${image.name} under qemu without changing it: on the console when interactive, or --check for a scripted pass/fail`,
        { check: true, ssh: 'systemctl is-system-running --wait' },
      ),
    },
    [options.layersTargetName]: {
      executor: 'vmlb:layers',
      cache: false,
      options: { imageName: image.name, imageRoot: image.root, distDir: options.distDir, ...blobOption(options) },
      metadata: metadata(options.layersTargetName, `List the layers of image ${image.name}: kind, hints, cache state and sizes (builds nothing)`, {
        json: true,
      }),
    },
    [options.diffTargetName]: {
      executor: 'vmlb:diff',
      cache: false,
      options: { imageName: image.name, imageRoot: image.root, distDir: options.distDir, ...blobOption(options) },
      metadata: metadata(
        options.diffTargetName,
        `Compare image ${image.name} at two layers (default: the last one and the one below): files, packages, or a shell on both (read-only)`,
        { from: image.layers[0]?.folder ?? 'base', to: image.layers[image.layers.length - 1]?.folder ?? 'base' },
      ),
    },
    sbom: {
      executor: 'vmlb:sbom',
      // Reads small files only, and its document carries the time it was made.
      cache: false,
      dependsOn: [lastBuild],
      options: { imageName: image.name, imageRoot: image.root, distDir: options.distDir },
      metadata: metadata(
        'sbom',
        `Write the software bill of materials of image ${image.name}: an SPDX 2.3 JSON document of every dpkg package with the layer that installed it (${layout.dir}/${image.name}.spdx.json)`,
        { distro: 'ubuntu' },
      ),
    },
    [options.shellTargetName]: {
      executor: 'vmlb:shell',
      cache: false,
      // No dependsOn: Nx gives a task with no dependencies the keyboard; the layer must be built already.
      options: { imageName: image.name, imageRoot: image.root, distDir: options.distDir, ...blobOption(options) },
      metadata: metadata(
        options.shellTargetName,
        `Open a shell (or run -- <command>) in a built layer of image ${image.name} (default: the last one), in a build's sandbox, on a throwaway overlay`,
        { layer: image.layers[0]?.folder ?? 'base' },
      ),
    },
    ...(options.blobs ? blobTargets(chain, lastBuild, metadata) : {}),
    ...(!options.blobs && image.layers.some((layer) => layer.hints.cacheMounts?.length) ? { gc: cacheMountsGcTarget(metadata) } : {}),
  };
  return {
    name: project,
    root: image.root,
    projectType: 'application',
    tags: ['vmlb:image'],
    implicitDependencies: lastLayer ? [lastLayer] : [],
    metadata: {
      description: `VM image ${image.name}: ${derived ? 'built on' : 'base'} ${describeBase(image)}, ${image.layers.length} layer(s)${derived ? ' of its own' : ''}`,
      technologies: ['vmlb'],
    },
    targets,
  };
}

type Metadata = (target: string, description: string, example: Record<string, unknown>) => ReturnType<typeof targetMetadata>;

/** The base import of an image with a base disk of its own. */
function baseTarget(image: ImageInfo, layout: ImageLayout, options: NormalizedOptions, metadata: Metadata): TargetConfiguration {
  return {
    executor: 'vmlb:base',
    cache: true,
    inputs: baseInputs(IMAGE_CONFIG_FILE, image.config.base.kind === 'path' ? resolveBasePath(image) : undefined),
    outputs: [...chainFileOutputs(layout.base, options), `{workspaceRoot}/${manifestPathFor(layout.base)}`],
    options: {
      imageName: image.name,
      base: baseOption(image),
      output: layout.base,
      layerFormat: LAYER_FORMAT,
      ...qcow2CompatOption(image.config),
      ...blobOption(options),
    },
    metadata: metadata(options.baseTargetName, `Import the base disk of image ${image.name} (${describeBase(image)}) into ${layout.base}`, {}),
  };
}

/** The image targets that exist only in blob mode. */
function blobTargets(chain: ChainOptions, lastBuild: TargetDependencyConfig, metadata: Metadata): Record<string, TargetConfiguration> {
  const { imageName, imageRoot, distDir } = chain;
  return {
    pull: {
      executor: 'vmlb:pull',
      cache: false,
      dependsOn: [lastBuild],
      options: { imageName, imageRoot, distDir },
      metadata: metadata(
        'pull',
        `Put every layer file of image ${imageName} in place in dist/ (blob mode): linked from this machine's blob cache, or downloaded from the blob store`,
        {},
      ),
    },
    gc: {
      executor: 'vmlb:gc',
      cache: false,
      options: { keep: 20 },
      metadata: metadata(
        'gc',
        `Remove blobs from this machine's blob cache that no ref in this workspace or its Nx cache names, except the most recently used; trim the cache mounts to their cap`,
        { keep: 5, dryRun: true },
      ),
    },
  };
}

/** gc without blob mode, on an image whose layers use cache mounts: it trims them, least recently used first. */
function cacheMountsGcTarget(
  metadata: (target: string, description: string, example: Record<string, unknown>) => ReturnType<typeof targetMetadata>,
): TargetConfiguration {
  return {
    executor: 'vmlb:gc',
    cache: false,
    options: {},
    metadata: metadata('gc', `Trim this machine's cache mounts (# cache-mount) to their cap, least recently used first`, {
      cacheMountsMaxSize: '5G',
      dryRun: true,
    }),
  };
}

/** The base as the base import's options give it. */
function baseOption(image: ImageInfo): Record<string, string> {
  const base = image.config.base;
  switch (base.kind) {
    case 'url':
      return { url: base.url, sha256: base.sha256 };
    case 'path':
      return { path: resolveBasePath(image) };
    case 'empty':
      return { empty: base.size };
    case 'image':
      throw new Error(`Image ${image.name} is built on layer ${base.layer} of image ${base.image}: it imports no base disk.`);
  }
}

/** A base path as the executor and the hash see it: relative to the workspace, or absolute. */
function resolveBasePath(image: ImageInfo): string {
  const base = image.config.base;
  if (base.kind !== 'path') throw new Error('not a path base');
  return path.posix.isAbsolute(base.path) ? base.path : path.posix.normalize(path.posix.join(image.root, base.path));
}

/** The base in a few words, for descriptions. */
function describeBase(image: ImageInfo): string {
  const base = image.config.base;
  switch (base.kind) {
    case 'url':
      return `download of ${base.url}`;
    case 'path':
      return `local disk ${resolveBasePath(image)}`;
    case 'empty':
      return `blank ${base.size} disk`;
    case 'image':
      return `layer ${base.layer} of image ${base.image}`;
  }
}
