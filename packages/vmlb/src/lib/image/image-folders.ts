import * as path from 'node:path';
import { DEFAULT_IMAGES_DIR, IMAGE_CONFIG_FILE, LAYER_FOLDER_PATTERN } from './image-files';

/**
 * Which folders are images, each with the file its projects are reported
 * against (image.json when it exists). A folder is an image when:
 * - it sits directly under images/ and holds an image.json;
 * - it holds a layer folder (`NN_name`) with a layer script;
 * - its image.json names a `base` (`readText` reads it).
 * Any other image.json (an app's asset, say) belongs to someone else.
 */
export function findImageFolders(files: readonly string[], readText: (file: string) => string): Map<string, string> {
  const byImage = new Map<string, string>();
  const present = new Set(files);
  for (const file of [...files].sort()) {
    const parts = file.split('/');
    const name = parts.at(-1)!;
    if (name === IMAGE_CONFIG_FILE) {
      const imageRoot = parts.slice(0, -1).join('/');
      if (isDefaultImageFolder(imageRoot) || namesABase(readText(file))) byImage.set(imageRoot, file);
    } else if (parts.length >= 3 && LAYER_FOLDER_PATTERN.test(parts.at(-2)!)) {
      const imageRoot = parts.slice(0, -2).join('/');
      if (!byImage.has(imageRoot)) byImage.set(imageRoot, file);
    }
  }
  // A layer script seen before its image.json (sorted after it) must not stand for the image.
  for (const [imageRoot, file] of byImage) {
    const config = path.posix.join(imageRoot, IMAGE_CONFIG_FILE);
    if (file !== config && present.has(config)) byImage.set(imageRoot, config);
  }
  return byImage;
}

/** `images/<name>`: the generators' folder, where every image.json is an image's, valid or not. */
function isDefaultImageFolder(folder: string): boolean {
  const parts = folder.split('/');
  return parts.length === 2 && parts[0] === DEFAULT_IMAGES_DIR;
}

/** An image.json elsewhere counts when it says where a base disk comes from. */
function namesABase(text: string): boolean {
  try {
    const json = JSON.parse(text) as unknown;
    return typeof json === 'object' && json !== null && !Array.isArray(json) && 'base' in json;
  } catch {
    return false;
  }
}
