import * as path from 'node:path';
import { type Tree, generateFiles } from '@nx/devkit';
import { type ScriptKind, SCRIPT_KINDS } from '../../lib/image/hints';
import { parseLayerFolder, suggestLayerFolder } from '../../lib/image/layer-discovery';
import { DEFAULT_IMAGES_DIR as IMAGES_DIR, IMAGE_CONFIG_FILE, IMAGE_NAME_PATTERN, LAYER_FOLDER_PATTERN } from '../../lib/image/image-files';
import { EXECUTABLE_MODE, formatFilesKeepingModes, templateDir } from '../generator-utils';
import { type ImageInTree, findImages, imagesInTree } from '../image-lookup';
import type { LayerGeneratorSchema } from './schema';

export { DEFAULT_IMAGES_DIR as IMAGES_DIR } from '../../lib/image/image-files';

/** Numbers of consecutive layers differ by this much, leaving room to insert layers between them. */
const LAYER_NUMBER_STEP = 10;
/** Layer numbers have at least this many digits (`00_base`), as LAYER_FOLDER_PATTERN requires. */
const MIN_NUMBER_WIDTH = 2;

interface NormalizedLayerOptions {
  image: string;
  imageRoot: string;
  folder: string;
  kind: ScriptKind;
  name: string;
  skipFormat: boolean;
}

/** A layer folder already in the image. */
interface ExistingLayer {
  folder: string;
  number: number;
  /** How many digits its number is written with (`010_x` → 3). */
  width: number;
}

/** `nx g vmlb:layer <name> --image <image>`: adds a layer folder with a script that does nothing yet. */
export async function layerGenerator(tree: Tree, schema: LayerGeneratorSchema): Promise<void> {
  const options = normalizeOptions(tree, schema);
  writeLayerScript(tree, {
    image: options.image,
    imageRoot: options.imageRoot,
    folder: options.folder,
    kind: options.kind,
    body: `echo "layer ${options.name}: nothing to do yet"`,
  });
  if (!options.skipFormat) await formatFilesKeepingModes(tree);
}

export default layerGenerator;

function normalizeOptions(tree: Tree, schema: LayerGeneratorSchema): NormalizedLayerOptions {
  const { name: image, root: imageRoot } = requireImage(tree, String(schema.image));

  const name = String(schema.name);
  checkLayerName(name, image);

  const kind = schema.kind ?? 'build-layer';
  if (!SCRIPT_KINDS.includes(kind)) {
    throw new Error(`--kind '${kind}' is not a layer script kind: use ${SCRIPT_KINDS.join(' or ')}.`);
  }

  const existing = existingLayers(tree, imageRoot);
  const width = Math.max(MIN_NUMBER_WIDTH, ...existing.map((layer) => layer.width));
  const number = schema.number === undefined ? nextNumber(existing) : parseNumberOption(schema.number);
  const folder = `${formatNumber(number, width)}_${name}`;

  const folderPath = path.posix.join(imageRoot, folder);
  if (tree.exists(folderPath)) {
    throw new Error(`${folderPath} already exists. Choose another name, or another number with --number.`);
  }
  const clash = existing.find((layer) => layer.number === number);
  if (clash) {
    throw new Error(
      `Layer number ${number} is already used by ${path.posix.join(imageRoot, clash.folder)}; two layers with one number have no order. ` +
        `Choose a free number with --number, or leave --number out to add the layer after the last one (${formatNumber(nextNumber(existing), width)}).`,
    );
  }
  return { image, imageRoot, folder, kind, name, skipFormat: schema.skipFormat ?? false };
}

/** The one image named (or at the folder) `image`; refuses a bad, missing or ambiguous one, listing those that exist. */
function requireImage(tree: Tree, image: string): ImageInTree {
  const isFolder = image.includes('/');
  if (isFolder ? path.posix.isAbsolute(image) || path.posix.normalize(image).split('/')[0] === '..' : !IMAGE_NAME_PATTERN.test(image)) {
    throw new Error(
      `--image '${image}' is not an image: give its name (letters, digits, '.', '_' and '-', starting with a letter or digit) or its folder inside the workspace, e.g. infra/vm/web.`,
    );
  }
  const found = findImages(tree, image);
  if (found.length > 1) {
    throw new Error(
      `Several images are named '${image}': ${found.map((each) => each.root).join(', ')}. Name the one that gets the layer by its folder, e.g. --image ${found[0].root}`,
    );
  }
  const folder = found[0]?.root ?? (isFolder ? path.posix.normalize(image) : path.posix.join(IMAGES_DIR, image));
  const configFile = path.posix.join(folder, IMAGE_CONFIG_FILE);
  if (tree.exists(configFile)) return found[0] ?? { name: path.posix.basename(folder), root: folder };
  if (tree.exists(folder)) {
    throw new Error(
      `${folder} has no ${IMAGE_CONFIG_FILE}, so it is not an image yet. Create ${configFile}, e.g. {"base": {"empty": "4G"}}, then add the layer.`,
    );
  }
  const images = imagesInTree(tree).map((each) => (each.root === path.posix.join(IMAGES_DIR, each.name) ? each.name : `${each.name} (${each.root})`));
  throw new Error(
    `There is no image '${image}': ${configFile} does not exist. ` +
      (images.length ? `Existing images: ${images.join(', ')}. ` : 'There are no images yet. ') +
      `To create it, run: nx g vmlb:image ${isFolder ? `${path.posix.basename(folder)} --directory ${path.posix.dirname(folder)}` : image}`,
  );
}

function checkLayerName(name: string, image: string): void {
  // A name the user meant as a whole folder (`10_update`) would also pass
  // the check below and end up as `20_10_update`.
  const asFolder = parseLayerFolder(name);
  if (asFolder) {
    throw new Error(
      `Layer name '${name}' looks like a whole layer folder. Give the name and the number apart: nx g vmlb:layer ${asFolder.name} --image ${image} --number ${name.slice(0, name.indexOf('_'))}`,
    );
  }
  // Checked through the folder pattern itself, so the generator accepts
  // exactly the names that layer discovery accepts.
  if (parseLayerFolder(`00_${name}`)?.name !== name) {
    const suggestion = parseLayerFolder(suggestLayerFolder(`00_${name}`))?.name ?? 'layer';
    throw new Error(`Layer name '${name}' is not valid: use letters, digits, '.', '_' and '-', e.g. '${suggestion}'.`);
  }
}

function existingLayers(tree: Tree, imageRoot: string): ExistingLayer[] {
  const layers: ExistingLayer[] = [];
  for (const folder of tree.children(imageRoot)) {
    const parsed = parseLayerFolder(folder);
    if (!parsed || tree.isFile(path.posix.join(imageRoot, folder))) continue;
    layers.push({ folder, number: parsed.number, width: LAYER_FOLDER_PATTERN.exec(folder)![1].length });
  }
  return layers.sort((a, b) => a.number - b.number);
}

function nextNumber(existing: ExistingLayer[]): number {
  const last = existing.at(-1);
  return last ? last.number + LAYER_NUMBER_STEP : 0;
}

/**
 * Always padded to the image's width: padding the user typed cannot be
 * kept, as Nx's command line turns `--number 005` into the number 5.
 */
function formatNumber(number: number, width: number): string {
  return String(number).padStart(width, '0');
}

function parseNumberOption(given: string | number): number {
  const text = String(given).trim();
  if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(Number(text))) {
    throw new Error(`--number '${given}' is not a layer number: use digits only, e.g. --number 15.`);
  }
  return Number(text);
}

export interface LayerScript {
  /** The image's name, for the script's header. */
  image: string;
  /** Workspace-relative image folder. */
  imageRoot: string;
  /** Layer folder name, e.g. `10_update`. */
  folder: string;
  kind: ScriptKind;
  /** Shell commands after the explanatory header. */
  body: string;
}

/**
 * Writes a layer script: the header for its kind (how it runs, which hints
 * apply), then `body`, executable. Returns its workspace-relative path.
 * Shared with the image generator, which writes the first layer.
 */
export function writeLayerScript(tree: Tree, script: LayerScript): string {
  const { imageRoot } = script;
  generateFiles(tree, path.join(templateDir('layer'), script.kind), imageRoot, {
    folder: script.folder,
    image: script.image,
    body: script.body.trimEnd(),
  });
  const scriptPath = path.posix.join(imageRoot, script.folder, script.kind);
  tree.changePermissions(scriptPath, EXECUTABLE_MODE);
  return scriptPath;
}
