import * as path from 'node:path';
import { ImageLayout } from './dist-layout';
import { IMAGE_CONFIG_FILE, discoverImage } from './layer-discovery';
import { type TestBootConfig, readImageConfig } from './image-config';
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
  return top ? layout.layer(top.folder) : layout.base;
}

/** image.json's testBoot settings, read when the boot runs (for the same reason as chainTop); none without an image folder. */
export function imageTestBootSettings(imageRoot: string | undefined, workspaceRoot: string): TestBootConfig {
  if (!imageRoot) return {};
  return readImageConfig(path.join(workspaceRoot, imageRoot, IMAGE_CONFIG_FILE), path.posix.join(imageRoot, IMAGE_CONFIG_FILE)).testBoot;
}
