import { IMAGE_CONFIG_FILE } from '../lib/image/image-files';
import { similarNames } from '../lib/util/similar-names';

/** One image as the checks across images see it. */
export interface ImageSummary {
  name: string;
  /** Workspace-relative image folder. */
  root: string;
  /** Workspace-relative image.json, where problems are reported. */
  configFile: string;
  /** Layer folders, in chain order. */
  layers: string[];
  /** image.json's base when it is another image's layer. */
  derivedFrom?: { image: string; layer: string };
}

/**
 * What is wrong with the images built on other images' layers, each as
 * [image.json, error] for a project-graph error: a base image or layer that
 * does not exist, or images built on each other in a circle. Each image is
 * inferred alone (and cached), so this is the one place that sees them
 * together. `unread`: image folders that failed to load, which may hold the
 * image a derived one names, so naming no image is not reported for them.
 */
export function derivedImageProblems(images: readonly ImageSummary[], unread: readonly string[]): Array<[string, Error]> {
  const byName = new Map(images.map((image) => [image.name, image]));
  const problems: Array<[string, Error]> = [];
  for (const image of images) {
    const base = image.derivedFrom;
    if (!base) continue;
    const problem = missingBase(image, base, byName, unread) ?? circle(image, byName);
    if (problem) problems.push([image.configFile, new Error(`${image.configFile}: ${problem}`)]);
  }
  return problems;
}

// A base image or layer that is not there, with the names that are.
function missingBase(
  image: ImageSummary,
  base: { image: string; layer: string },
  byName: Map<string, ImageSummary>,
  unread: readonly string[],
): string | undefined {
  const other = byName.get(base.image);
  if (!other) {
    if (unread.length) return undefined;
    const names = [...byName.keys()].filter((name) => name !== image.name).sort();
    const near = similarNames(base.image, names, names.length);
    return (
      `base.image '${base.image}' names no image of this workspace${near.length ? ` (did you mean ${near.join(', ')}?)` : ''}. ` +
      `Name one of: ${names.join(', ') || '(no other image)'}; or give the image a base disk of its own (base.url, base.path or base.empty).`
    );
  }
  if (!other.layers.includes(base.layer)) {
    return (
      `base.layer '${base.layer}' is not a layer of image ${other.name} (${other.root}), whose layers are ${other.layers.join(', ') || 'none'}. ` +
      `Name one of them in base.layer${other.layers.length ? `, e.g. "${other.layers[other.layers.length - 1]}"` : ''}.`
    );
  }
  return undefined;
}

// Images built on each other in a circle would have layers that depend on themselves.
function circle(image: ImageSummary, byName: Map<string, ImageSummary>): string | undefined {
  const path = [image.name];
  for (
    let current = image.derivedFrom && byName.get(image.derivedFrom.image);
    current;
    current = current.derivedFrom && byName.get(current.derivedFrom.image)
  ) {
    path.push(current.name);
    if (current.name === image.name) {
      return (
        `image ${image.name} is built on itself (${path.join(' → ')}, through base.image in each ${IMAGE_CONFIG_FILE}), so its layers would depend on themselves. ` +
        `Give one of these images a base disk of its own (base.url, base.path or base.empty) instead of a layer of the next.`
      );
    }
    if (path.length > byName.size + 1) return undefined;
  }
  return undefined;
}
