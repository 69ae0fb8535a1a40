import * as path from 'node:path';
import { ImageLayout } from './dist-layout';
import { IMAGE_CONFIG_FILE, discoverImage } from './layer-discovery';
import { existsSync } from 'node:fs';
import { type TestBootConfig, readImageConfig } from './image-config';
import type { EnvDeclarations } from './script-env';

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
  return top ? layout.layer(top.folder) : layout.base;
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
  return readImageConfig(file, path.posix.join(imageRoot, IMAGE_CONFIG_FILE)).env ?? {};
}
