import * as path from 'node:path';
import { ImageLayout } from './dist-layout';
import { IMAGE_CONFIG_FILE, discoverImage } from './layer-discovery';
import { type ImageConfig, type TestBootConfig, derivedBase, readImageConfig } from './image-config';

/** The options by which an image target finds its chain: its top given, or its image folder and output folder. */
export interface ChainLocation {
  imageName: string;
  chain?: string;
  imageRoot?: string;
  distDir?: string;
}

/**
 * The top of an image's chain, workspace-relative: `chain` when given,
 * else the last layer's qcow2 (the base when there is none), found from
 * the image folder when the task runs. The plugin does not put it in the
 * image targets' options: Nx hashes every target of a project into each
 * of its tasks, so adding a layer would change the base import's key.
 */
export function chainTop(location: ChainLocation, workspaceRoot: string): string {
  if (location.chain) return location.chain;
  if (!location.imageRoot || !location.distDir) {
    throw new Error(`Image ${location.imageName}: give --chain, or --imageRoot and --distDir (the plugin sets these two).`);
  }
  const image = discoverImage(workspaceRoot, location.imageRoot);
  const layout = new ImageLayout(image.name, location.distDir);
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
