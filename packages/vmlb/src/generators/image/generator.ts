import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { type Tree, logger } from '@nx/devkit';
import type { ScriptKind } from '../../lib/image/hints';
import { isSha256 } from '../../lib/cache-identity/digest';
import { parseImageConfig } from '../../lib/image/image-config';
import { IMAGE_CONFIG_FILE, IMAGE_NAME_PATTERN } from '../../lib/image/image-files';
import { parseSize } from '../../lib/util/units';
import { formatFilesKeepingModes, templateDir } from '../generator-utils';
import { initGenerator } from '../init/generator';
import { imagesInTree } from '../image-lookup';
import { IMAGES_DIR, writeLayerScript } from '../layer/generator';
import type { ImageGeneratorSchema } from './schema';

/** The blank disk an image gets when no base is given. */
export const DEFAULT_EMPTY_SIZE = '4G';

/** Where image.json finds its schema, for editors' completion and checks: relative to the image folder. */
export function imageSchemaRef(imageRoot: string): string {
  return path.posix.relative(imageRoot, 'node_modules/vmlb/src/schemas/image.schema.json');
}

const BASE_URL_PATTERN = /^(https?|file):\/\//;

/** The `base` field of image.json, in the three shapes the schema allows. */
export type ImageBase = { url: string; sha256: string } | { path: string } | { empty: string };

interface FirstLayer {
  folder: string;
  kind: ScriptKind;
  /** File under files/first-layer/ with the script's commands. */
  bodyFile: string;
}

interface NormalizedImageOptions {
  name: string;
  imageRoot: string;
  base: ImageBase;
  firstLayer: FirstLayer;
  skipFormat: boolean;
}

/** `nx g vmlb:image <name>`: an image folder with image.json and a first layer. */
export async function imageGenerator(tree: Tree, schema: ImageGeneratorSchema): Promise<void> {
  const options = normalizeOptions(tree, schema);
  await initGenerator(tree, { skipFormat: true });
  writeImageConfig(tree, options);
  writeLayerScript(tree, {
    image: options.name,
    imageRoot: options.imageRoot,
    folder: options.firstLayer.folder,
    kind: options.firstLayer.kind,
    body: readFileSync(path.join(templateDir('image'), 'first-layer', options.firstLayer.bodyFile), 'utf8'),
  });
  if (!options.skipFormat) await formatFilesKeepingModes(tree);
}

export default imageGenerator;

function normalizeOptions(tree: Tree, schema: ImageGeneratorSchema): NormalizedImageOptions {
  const name = String(schema.name);
  const imageRoot = newImageRoot(tree, name, schema.directory);
  const base = normalizeBase(schema);
  if ('path' in base) warnIfMissing(tree, imageRoot, base.path);
  const firstLayer: FirstLayer =
    'empty' in base
      ? { folder: '00_disk', kind: 'modify-disk', bodyFile: 'partition-blank-disk.sh' }
      : { folder: '00_base', kind: 'build-layer', bodyFile: 'print-os-release.sh' };
  return { name, imageRoot, base, firstLayer, skipFormat: schema.skipFormat ?? false };
}

/** The folder a new image named `name` gets under `directory`; refuses a bad name, a folder that exists and a name another image has. */
export function newImageRoot(tree: Tree, name: string, directory: string | undefined): string {
  if (!IMAGE_NAME_PATTERN.test(name)) {
    throw new Error(`Image name '${name}' is not valid: use letters, digits, '.', '_' and '-', starting with a letter or digit, e.g. 'debian-12'.`);
  }
  const imageRoot = path.posix.join(normalizeDirectory(directory), name);
  if (tree.exists(imageRoot)) {
    throw new Error(`${imageRoot} already exists. Choose another name, or add a layer to that image: nx g vmlb:layer <layer name> --image ${name}`);
  }
  const sameName = imagesInTree(tree).find((image) => image.name === name);
  if (sameName) {
    throw new Error(
      `An image named '${name}' already exists in ${sameName.root}; two images with one name would have the same Nx projects. Choose another name.`,
    );
  }
  return imageRoot;
}

const BASE_CHOICES = '--baseUrl <url> --sha256 <64 hex digits> (a download), --basePath <file> (a local disk) or --empty <size> (a blank disk)';

/** --directory: a folder inside the workspace; images/ by default. */
function normalizeDirectory(directory: string | undefined): string {
  if (directory === undefined) return IMAGES_DIR;
  const normalized = path.posix.normalize(directory.trim().replace(/\\/g, '/')).replace(/\/$/, '');
  if (normalized === '' || normalized === '.' || path.posix.isAbsolute(normalized) || normalized.split('/')[0] === '..') {
    throw new Error(`--directory '${directory}' must be a folder inside the workspace, relative to its root, e.g. --directory infra/vm.`);
  }
  return normalized;
}

/** The base the options give, checked; a blank disk of DEFAULT_EMPTY_SIZE when none is given. */
export function normalizeBase(schema: Pick<ImageGeneratorSchema, 'baseUrl' | 'sha256' | 'basePath' | 'empty'>): ImageBase {
  const given = (['baseUrl', 'basePath', 'empty'] as const).filter((option) => schema[option] !== undefined);
  if (given.length > 1) {
    throw new Error(`Give the image one base, not ${given.map((option) => `--${option}`).join(' and ')}: ${BASE_CHOICES}.`);
  }
  if (schema.sha256 !== undefined && schema.baseUrl === undefined) {
    throw new Error(
      `--sha256 checks the file --baseUrl downloads, and no --baseUrl was given. Add --baseUrl <url>, or drop --sha256 for ${
        given.length ? `--${given[0]}` : 'a blank disk'
      }.`,
    );
  }

  if (schema.baseUrl !== undefined) {
    const url = schema.baseUrl.trim();
    if (!BASE_URL_PATTERN.test(url) || !URL.canParse(url)) {
      throw new Error(`--baseUrl '${schema.baseUrl}' is not a URL vmlb can download: it must start with http://, https:// or file://.`);
    }
    if (schema.sha256 === undefined) {
      throw new Error(
        `--baseUrl needs --sha256 <64 hex digits>, the SHA-256 of the downloaded file, so that a changed download is noticed. ` +
          `Take it from the publisher's checksum list, or compute it: curl -fsSL '${url}' | sha256sum`,
      );
    }
    const sha256 = schema.sha256.trim();
    if (!isSha256(sha256, { anyCase: true })) {
      throw new Error(`--sha256 '${schema.sha256}' is not a SHA-256: it must be 64 hexadecimal digits (0-9, a-f), and it has ${sha256.length} characters.`);
    }
    return { url, sha256: sha256.toLowerCase() };
  }

  if (schema.basePath !== undefined) {
    const basePath = schema.basePath.trim();
    if (basePath === '') {
      throw new Error(`--basePath is empty: give a qcow2 or raw disk file, relative to the image folder or absolute.`);
    }
    return { path: basePath };
  }

  // `4 G` means 4G to parseSize but not to the schema's pattern.
  const size = String(schema.empty ?? DEFAULT_EMPTY_SIZE).replace(/\s+/g, '');
  if (parseSize(size) === undefined) {
    throw new Error(`--empty '${schema.empty}' is not a disk size: use a number with K, M, G or T, e.g. --empty 4G (binary units: 4G is 4 GiB).`);
  }
  return { empty: size };
}

/**
 * A base path is resolved from the image folder, while a path typed on the
 * command line reads as relative to the current folder; the disk may also
 * simply not be there yet. Neither is an error now, but both are worth a word.
 */
export function warnIfMissing(tree: Tree, imageRoot: string, basePath: string): void {
  const found = path.isAbsolute(basePath) ? existsSync(basePath) : tree.exists(path.posix.join(imageRoot, basePath));
  if (!found) {
    logger.warn(
      `vmlb: the base disk '${basePath}' does not exist (yet). A relative --basePath is resolved from ${imageRoot}/, ` +
        `e.g. ../../disks/base.qcow2 for disks/base.qcow2 in the workspace. Fix base.path in ${imageRoot}/${IMAGE_CONFIG_FILE} if needed.`,
    );
  }
}

function writeImageConfig(tree: Tree, options: NormalizedImageOptions): void {
  writeCheckedImageConfig(tree, options.imageRoot, { base: options.base }, 'vmlb:image');
}

/** Writes image.json after checking it against the image schema, which decides what an image.json may hold. */
export function writeCheckedImageConfig(tree: Tree, imageRoot: string, config: { base: ImageBase } & Record<string, unknown>, generator: string): void {
  const configFile = path.posix.join(imageRoot, IMAGE_CONFIG_FILE);
  const text = `${JSON.stringify({ $schema: imageSchemaRef(imageRoot), ...config }, null, 2)}\n`;
  try {
    parseImageConfig(text, configFile);
  } catch (error) {
    throw new Error(`${generator} would write an invalid ${configFile}; this is a bug in vmlb. ${(error as Error).message}`);
  }
  tree.write(configFile, text);
}
