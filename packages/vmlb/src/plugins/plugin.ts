import { readFileSync, readdirSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { AggregateCreateNodesError, type CreateNodes, type CreateNodesResult, type ProjectConfiguration, hashArray, logger } from '@nx/devkit';
import { calculateHashesForCreateNodes, PluginCache, workspaceDataDirectory } from '@nx/devkit/internal';
import { targetDefaultsProblem } from '../lib/cache-identity/target-defaults-guard';
import { ImageLayout } from '../lib/image/dist-layout';
import { chainBase } from '../lib/image/image-chain';
import { derivedBase } from '../lib/image/image-config';
import { IMAGE_FILES_GLOB } from '../lib/image/image-files';
import { findImageFolders } from '../lib/image/image-folders';
import { type ImageInfo, ImageDefinitionError, discoverImage } from '../lib/image/layer-discovery';
import { IMAGE_CONFIG_FILE } from '../lib/image/image-files';
import { layerProjectName } from '../lib/image/project-names';
import { vmlbCodeId } from '../lib/util/version';
import { type ImageSummary, derivedImageProblems } from './derived-images';
import { imageProject } from './image-project';
import { layerProject } from './layer-project';
import { type NormalizedOptions, type VmlbPluginOptions, normalizeOptions } from './options';

export { normalizeOptions, type VmlbPluginOptions } from './options';

/** What the plugin infers for one image folder; cached on disk keyed by the folder's content hash. */
interface ImageNodes {
  projects: Record<string, ProjectConfiguration>;
  warnings: string[];
  /** What the checks across images (lib/image derived bases) need to know of it. */
  summary: ImageSummary;
}

/** Every image folder's projects: from the inference cache while the folder and vmlb's code are unchanged, else from inferImageNodes. */
export const createNodes: CreateNodes<VmlbPluginOptions> = [
  IMAGE_FILES_GLOB,
  async (files, rawOptions, context) => {
    const options = normalizeOptions(rawOptions);
    const imageRoots = findImageFolders(files, (file) => readFileSync(path.join(context.workspaceRoot, file), 'utf8'));
    const roots = [...imageRoots.keys()];
    const contentHashes = await calculateHashesForCreateNodes(roots, { options, code: vmlbCodeId() }, context);
    const cache = new PluginCache<ImageNodes>(path.join(workspaceDataDirectory, `vmlb-${hashArray([JSON.stringify(options)])}.hash`));

    const results: Array<readonly [string, CreateNodesResult]> = [];
    const errors: Array<[string, Error]> = [];
    const summaries: ImageSummary[] = [];
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
        summaries.push(nodes.summary);
      } catch (error) {
        // Each problem under the file or folder to fix (Nx prints that above the message).
        if (error instanceof ImageDefinitionError) error.problems.forEach(({ file, message }) => errors.push([file, new Error(message)]));
        else errors.push([sourceFile, error as Error]);
      }
    });
    cache.writeToDisk();

    findNameClashes(results).forEach((clash) => errors.push(clash));
    // An image whose folder could not be read may be the one a derived image names: no verdict on those.
    const unread = roots.filter((root) => !summaries.some((summary) => summary.root === root));
    derivedImageProblems(summaries, unread).forEach((problem) => errors.push(problem));
    const defaultsProblem = targetDefaultsProblem(context.nxJsonConfiguration, results);
    if (defaultsProblem) logger.warn(`vmlb: ${defaultsProblem.message}`);
    if (errors.length) throw new AggregateCreateNodesError(errors, results);
    return results;
  },
];

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

/** The Nx projects of one image: one per layer, each on the one below, plus the image project. */
export function inferImageNodes(image: ImageInfo, options: NormalizedOptions): ImageNodes {
  const layout = new ImageLayout(image.name, options.distDir);
  const projects: Record<string, ProjectConfiguration> = {};
  const derived = derivedBase(image.config);
  // A derived image's first layer is an overlay on the other image's layer, built by that layer's project.
  let parentFile = chainBase(image.config, layout, options.distDir);
  let parentProject: string | undefined = derived ? layerProjectName(derived.image, derived.layer) : undefined;
  for (const layer of image.layers) {
    const output = layout.layer(layer.folder);
    projects[layer.dir] = layerProject(image, layer, { parentFile, parentProject, output }, options);
    parentFile = output;
    parentProject = layerProjectName(image.name, layer.folder);
  }
  projects[image.root] = imageProject(image, layout, parentProject, options);
  const summary: ImageSummary = { name: image.name, root: image.root, configFile: image.configFile, layers: image.layers.map((layer) => layer.folder) };
  return { projects, warnings: image.warnings, summary: derived ? { ...summary, derivedFrom: derived } : summary };
}

/**
 * Images anywhere can share a folder name (`infra/web`, `images/web`), and
 * a layer project (`<image>-<NN_layer>`) can coincide with the image project
 * of an image named `image` (`image-<NN_layer>`). Nx would merge or reject
 * them with a confusing message; say what clashes and how to fix it.
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
          new Error(
            `Project name '${name}' is inferred for both ${other} and ${root}: two images share a name. ` +
              `Give one of them another name with "name" in its ${IMAGE_CONFIG_FILE}, or rename its folder.`,
          ),
        ]);
      } else {
        owners.set(name, root);
      }
    }
  }
  return clashes;
}
