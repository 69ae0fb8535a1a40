import * as path from 'node:path';
import { type Tree, generateFiles } from '@nx/devkit';
import { type ScriptKind, SCRIPT_KINDS } from '../../lib/image/hints';
import { IMAGE_CONFIG_FILE, IMAGE_NAME_PATTERN, LAYER_FOLDER_PATTERN, parseLayerFolder, suggestLayerFolder } from '../../lib/image/layer-discovery';
import { EXECUTABLE_MODE, formatFilesKeepingModes, templateDir } from '../generator-utils';
import type { LayerGeneratorSchema } from './schema';

/** The folder that holds every image, relative to the workspace. */
export const IMAGES_DIR = 'images';

/** Numbers of consecutive layers differ by this much, leaving room to insert layers between them. */
const LAYER_NUMBER_STEP = 10;
/** Layer numbers have at least this many digits (`00_base`), as LAYER_FOLDER_PATTERN requires. */
const MIN_NUMBER_WIDTH = 2;

interface NormalizedLayerOptions {
  image: string;
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
    folder: options.folder,
    kind: options.kind,
    body: `echo "layer ${options.name}: nothing to do yet"`,
  });
  if (!options.skipFormat) await formatFilesKeepingModes(tree);
}

export default layerGenerator;

function normalizeOptions(tree: Tree, schema: LayerGeneratorSchema): NormalizedLayerOptions {
  const image = String(schema.image);
  if (!IMAGE_NAME_PATTERN.test(image)) {
    throw new Error(
      `--image '${image}' is not an image name: image folders under ${IMAGES_DIR}/ are named with letters, digits, '.', '_' and '-', starting with a letter or digit.`,
    );
  }
  const imageRoot = path.posix.join(IMAGES_DIR, image);
  requireImage(tree, image, imageRoot);

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
  return { image, folder, kind, name, skipFormat: schema.skipFormat ?? false };
}

/** Refuses an image that does not exist, listing those that do. */
function requireImage(tree: Tree, image: string, imageRoot: string): void {
  const configFile = path.posix.join(imageRoot, IMAGE_CONFIG_FILE);
  if (tree.exists(configFile)) return;
  if (tree.exists(imageRoot)) {
    throw new Error(
      `${imageRoot} has no ${IMAGE_CONFIG_FILE}, so it is not an image yet. Create ${configFile}, e.g. {"base": {"empty": "4G"}}, then add the layer.`,
    );
  }
  const images = existingImages(tree);
  throw new Error(
    `There is no image '${image}': ${configFile} does not exist. ` +
      (images.length ? `Existing images: ${images.join(', ')}. ` : `There are no images under ${IMAGES_DIR}/ yet. `) +
      `To create it, run: nx g vmlb:image ${image}`,
  );
}

/** Image names: folders under images/ that hold an image.json. */
function existingImages(tree: Tree): string[] {
  return tree
    .children(IMAGES_DIR)
    .filter((child) => tree.exists(path.posix.join(IMAGES_DIR, child, IMAGE_CONFIG_FILE)))
    .sort();
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
  /** Image folder name under images/. */
  image: string;
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
  const imageRoot = path.posix.join(IMAGES_DIR, script.image);
  generateFiles(tree, path.join(templateDir('layer'), script.kind), imageRoot, {
    folder: script.folder,
    image: script.image,
    body: script.body.trimEnd(),
  });
  const scriptPath = path.posix.join(imageRoot, script.folder, script.kind);
  tree.changePermissions(scriptPath, EXECUTABLE_MODE);
  return scriptPath;
}
