import * as path from 'node:path';
import { ImageLayout } from './dist-layout';
import { existsSync } from 'node:fs';
import type { ScriptKind } from './hints';
import { imageProjectName } from './project-names';
import { type LayerInfo, discoverImage } from './layer-discovery';
import { IMAGE_CONFIG_FILE } from './image-files';
import { type ImageConfig, type TestBootConfig, derivedBase, readImageConfig, readImageEnv } from './image-config';
import type { EnvDeclarations } from './script-env';
import { selectChainPoint } from './layer-select';

/** The options by which an image target finds its chain: its top given, or its image folder and output folder. */
export interface ChainLocation {
  imageName: string;
  chain?: string;
  imageRoot?: string;
  distDir?: string;
  /** `--upTo`: a layer folder, its number (Nx reads `--upTo 10` as a number), or `base`; the chain ends there instead of at the last layer. */
  upTo?: string | number;
}

/**
 * The top of an image's chain, workspace-relative: `chain` when given,
 * else the last layer's qcow2 (the base when there is none), or with
 * `upTo` the qcow2 of the layer it names, found from the image folder
 * when the task runs. The plugin does not put it in the image targets'
 * options: Nx hashes every target of a project into each of its tasks, so
 * adding a layer would change the base import's key.
 */
export function chainTop(location: ChainLocation, workspaceRoot: string): string {
  if (location.chain) {
    if (location.upTo !== undefined) throw new Error(`Image ${location.imageName}: give --chain or --upTo, not both.`);
    return location.chain;
  }
  if (!location.imageRoot || !location.distDir) {
    throw new Error(`Image ${location.imageName}: give --chain, or --imageRoot and --distDir (the plugin sets these two).`);
  }
  const image = discoverImage(workspaceRoot, location.imageRoot);
  const layout = new ImageLayout(image.name, location.distDir);
  if (location.upTo !== undefined) {
    const point = selectChainPoint(image, String(location.upTo), '--upTo');
    return point.kind === 'base' ? layout.base : layout.layer(point.layer.folder);
  }
  const top = image.layers[image.layers.length - 1];
  return top ? layout.layer(top.folder) : chainBase(image.config, layout, location.distDir);
}

/**
 * The file an image's first layer is an overlay on, workspace-relative:
 * its own imported base, or for a derived image the other image's layer
 * file in that image's dist folder (shared, never copied).
 */
export function chainBase(config: ImageConfig, layout: ImageLayout, distDir: string): string {
  const derived = derivedBase(config);
  return derived ? new ImageLayout(derived.image, distDir).layer(derived.layer) : layout.base;
}

/** image.json's testBoot settings, read when the boot runs (for the same reason as chainTop); none without an image folder. */
export function imageTestBootSettings(imageRoot: string | undefined, workspaceRoot: string): TestBootConfig {
  if (!imageRoot) return {};
  return readImageConfig(path.join(workspaceRoot, imageRoot, IMAGE_CONFIG_FILE), path.posix.join(imageRoot, IMAGE_CONFIG_FILE)).testBoot;
}

/**
 * image.json's `env` declarations, read when a layer builds: those with
 * `"key": false` are in no target's options, so that declaring one changes
 * no key. None when the image folder has no image.json.
 */
export function imageScriptEnv(imageRoot: string, workspaceRoot: string): EnvDeclarations {
  const file = path.join(workspaceRoot, imageRoot, IMAGE_CONFIG_FILE);
  if (!existsSync(file)) return {};
  return readImageEnv(file, path.posix.join(imageRoot, IMAGE_CONFIG_FILE));
}

/** One file of an image's chain, as the listing and the SBOM walk it. */
export interface ChainFile {
  /** The image whose folder holds the file: the image itself, or one it is built on. */
  image: string;
  /** `base`, or the layer folder. */
  layer: string;
  kind: 'base' | ScriptKind;
  /** Workspace-relative qcow2. */
  qcow2: string;
  /** The layer's folder, script and hints; none for a base. */
  info?: LayerInfo;
}

/** More images built on each other than any workspace has: past this, image.json files name each other in a circle. */
const MAX_DERIVATION_DEPTH = 100;

/**
 * Every file of an image's chain, base first: for a derived image, the
 * chain of the image it is built on up to the layer it names, then its own
 * layers. `imageRootOf` finds an image's folder by name (from the project
 * graph); the plugin has already refused a missing image or a circle, so
 * those are errors here only for a graph from before the change.
 */
export function imageChainFiles(
  workspaceRoot: string,
  imageRoot: string,
  distDir: string,
  imageRootOf: (name: string) => string | undefined,
  depth = 0,
): ChainFile[] {
  const image = discoverImage(workspaceRoot, imageRoot);
  const layout = new ImageLayout(image.name, distDir);
  const derived = derivedBase(image.config);
  let below: ChainFile[];
  if (derived) {
    const otherRoot = imageRootOf(derived.image);
    if (!otherRoot || depth >= MAX_DERIVATION_DEPTH) {
      throw new Error(
        `${image.configFile}: image ${image.name} is built on image ${derived.image}, which ${otherRoot ? 'leads into a circle of images' : 'this workspace does not have'}. Fix base.image there (nx show projects lists the images).`,
      );
    }
    const other = imageChainFiles(workspaceRoot, otherRoot, distDir, imageRootOf, depth + 1);
    const end = other.findIndex((file) => file.image === derived.image && file.layer === derived.layer);
    if (end < 0) throw new Error(`${image.configFile}: image ${derived.image} has no layer ${derived.layer}. Fix base.layer there.`);
    below = other.slice(0, end + 1);
  } else {
    below = [{ image: image.name, layer: 'base', kind: 'base', qcow2: layout.base }];
  }
  return [
    ...below,
    ...image.layers.map((layer): ChainFile => ({ image: image.name, layer: layer.folder, kind: layer.kind, qcow2: layout.layer(layer.folder), info: layer })),
  ];
}

/** An image's folder by its name, from the projects Nx knows (`image-<name>`). */
export function imageRootFinder(projects: Record<string, { root: string }> | undefined): (name: string) => string | undefined {
  return (name) => projects?.[imageProjectName(name)]?.root;
}
