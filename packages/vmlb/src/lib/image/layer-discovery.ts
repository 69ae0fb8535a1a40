import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { type ScriptHints, type ScriptKind, SCRIPT_KINDS, parseHints } from './hints';
import { type ImageConfig, readImageConfig } from './image-config';
import { DEFAULT_IMAGES_DIR, IMAGE_CONFIG_FILE, IMAGE_NAME_PATTERN, LAYER_FOLDER_PATTERN } from './image-files';

export interface LayerInfo {
  /** Folder name, e.g. `10_update`. */
  folder: string;
  /** The number in front, e.g. 10. */
  number: number;
  /** Workspace-relative folder, e.g. `images/prod/10_update`. */
  dir: string;
  kind: ScriptKind;
  /** Workspace-relative script path, e.g. `images/prod/10_update/build-layer`. */
  script: string;
  hints: ScriptHints;
}

export interface ImageInfo {
  /** image.json's `name`, else the image folder's name, e.g. `prod`. */
  name: string;
  /** Workspace-relative image folder, e.g. `images/prod`. */
  root: string;
  /** Workspace-relative image.json path. */
  configFile: string;
  config: ImageConfig;
  /** In chain order: the first layer sits on the base. */
  layers: LayerInfo[];
  /** Things that are not errors but are probably mistakes (a folder that looks like a layer but is not one). */
  warnings: string[];
}

/** One problem of an image folder: the workspace-relative file or folder to fix, and what is wrong with it and how to fix it. */
export interface ImageProblem {
  file: string;
  message: string;
}

/** An image folder that cannot be built as it is; the message lists every problem and its fix. */
export class ImageDefinitionError extends Error {
  constructor(
    readonly imageRoot: string,
    readonly problems: ImageProblem[],
  ) {
    super(
      problems.length === 1
        ? problems[0].message
        : `${imageRoot} has ${problems.length} problems:\n${problems.map((problem) => `  - ${problem.message}`).join('\n')}`,
    );
    this.name = 'ImageDefinitionError';
  }
}

/** Parses a layer folder name; undefined when it is not one. */
export function parseLayerFolder(folder: string): { number: number; name: string } | undefined {
  const match = LAYER_FOLDER_PATTERN.exec(folder);
  return match ? { number: Number(match[1]), name: match[2] } : undefined;
}

/**
 * A folder that starts with a digit but is not a valid layer name
 * (`1_foo`, `10-foo`, `10_`): almost certainly meant as a layer.
 */
export function looksLikeLayerFolder(folder: string): boolean {
  return /^[0-9]/.test(folder) && !LAYER_FOLDER_PATTERN.test(folder);
}

/** Suggests a valid layer folder name for one that looks like a layer but is not. */
export function suggestLayerFolder(folder: string): string {
  const match = /^([0-9]+)[^A-Za-z0-9]*(.*)$/.exec(folder);
  const number = (match?.[1] ?? '0').padStart(2, '0');
  const name = (match?.[2] ?? '').replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^-+|-+$/g, '') || 'layer';
  return `${number}_${name}`;
}

/**
 * Reads one image folder: its image.json and its layer folders, in chain
 * order. Every problem found is reported at once, each with its fix.
 *
 * @param workspaceRoot absolute path of the Nx workspace
 * @param imageRoot workspace-relative image folder, e.g. `images/prod`
 */
export function discoverImage(workspaceRoot: string, imageRoot: string): ImageInfo {
  const folderName = path.posix.basename(imageRoot);
  const absoluteRoot = path.join(workspaceRoot, imageRoot);
  const configFile = path.posix.join(imageRoot, IMAGE_CONFIG_FILE);
  const problems: ImageProblem[] = [];
  const problem = (file: string, message: string) => problems.push({ file, message });
  const warnings: string[] = [];

  let config: ImageConfig | undefined;
  if (!existsSync(path.join(workspaceRoot, configFile))) {
    problem(
      imageRoot,
      `${imageRoot} has layer folders but no ${IMAGE_CONFIG_FILE}. Create ${configFile}, e.g. {"base": {"empty": "4G"}}, or run: nx g vmlb:image ${folderName}${path.posix.dirname(imageRoot) === DEFAULT_IMAGES_DIR ? '' : ` --directory ${path.posix.dirname(imageRoot)}`}`,
    );
  } else {
    try {
      config = readImageConfig(path.join(workspaceRoot, configFile), configFile);
    } catch (error) {
      problem(configFile, (error as Error).message);
    }
  }
  const name = config?.name ?? folderName;
  if (!IMAGE_NAME_PATTERN.test(name)) {
    problem(
      imageRoot,
      `${imageRoot}: '${name}' cannot name an image: use letters, digits, '.', '_' and '-', starting with a letter or digit. ` +
        `Rename the folder, or name the image with "name" in its ${IMAGE_CONFIG_FILE}.`,
    );
  }

  const layers: LayerInfo[] = [];
  const entries = readdirSync(absoluteRoot, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() || (entry.isSymbolicLink() && isDirectory(path.join(absoluteRoot, entry.name))))
    .map((entry) => entry.name)
    .sort();
  for (const folder of entries) {
    const parsed = parseLayerFolder(folder);
    const dir = path.posix.join(imageRoot, folder);
    if (!parsed) {
      if (looksLikeLayerFolder(folder)) {
        warnings.push(
          `${dir} looks like a layer folder but is not one, so it is not built: layer folders are named NN_name ` +
            `(two or more digits, '_', then letters, digits, '.', '_' or '-'). Rename it, e.g. to ${suggestLayerFolder(folder)}.`,
        );
      }
      continue;
    }
    const present = SCRIPT_KINDS.filter((kind) => existsSync(path.join(workspaceRoot, dir, kind)));
    if (present.length === 0) {
      problem(
        dir,
        `${dir} is a layer folder but holds neither build-layer nor modify-disk. Add one of them (nx g vmlb:layer), or rename the folder so it does not start with a number.`,
      );
      continue;
    }
    if (present.length > 1) {
      problem(dir, `${dir} holds both build-layer and modify-disk; a layer runs exactly one script. Move one of them into a layer of its own.`);
      continue;
    }
    const kind = present[0];
    const script = path.posix.join(dir, kind);
    const absoluteScript = path.join(workspaceRoot, script);
    const scriptStat = statSync(absoluteScript);
    if (!scriptStat.isFile()) {
      problem(script, `${script} is not a regular file.`);
      continue;
    }
    if ((scriptStat.mode & 0o111) === 0) {
      problem(script, `${script} is not executable. Run: chmod +x ${script}`);
      continue;
    }
    try {
      const text = readFileSync(absoluteScript, 'utf8');
      // The kernel runs a script only with a #! line; without it the build would fail with
      // "Exec format error" deep inside the chroot.
      if (!text.startsWith('#!')) {
        problem(
          script,
          `${script} has no #! line, so it cannot be run. Make its first line name its interpreter, e.g. #!/bin/sh (found ${JSON.stringify(text.split('\n')[0].slice(0, 40))}).`,
        );
        continue;
      }
      const hints = parseHints(text, script, kind);
      layers.push({ folder, number: parsed.number, dir, kind, script, hints });
    } catch (error) {
      problem(script, (error as Error).message);
    }
  }

  const byNumber = new Map<number, string[]>();
  for (const layer of layers) byNumber.set(layer.number, [...(byNumber.get(layer.number) ?? []), layer.folder]);
  for (const [number, folders] of byNumber) {
    if (folders.length > 1) {
      problem(imageRoot, `${imageRoot}: layers ${folders.join(' and ')} share the number ${number}, so their order is ambiguous. Renumber one of them.`);
    }
  }

  if (problems.length || !config) throw new ImageDefinitionError(imageRoot, problems);
  layers.sort((a, b) => a.number - b.number);
  return { name, root: imageRoot, configFile, config, layers, warnings };
}

function isDirectory(file: string): boolean {
  try {
    return statSync(file).isDirectory();
  } catch {
    return false;
  }
}
