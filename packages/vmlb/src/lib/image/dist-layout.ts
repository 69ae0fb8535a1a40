import * as path from 'node:path';

/** Default folder, relative to the workspace, that holds every image's build output. */
export const DEFAULT_DIST_DIR = 'dist/images';

/**
 * Where an image's files live. Every file of one chain sits in one folder,
 * so each overlay can name its backing file by bare file name and the chain
 * stays valid wherever the folder is copied or restored.
 *
 *   dist/images/prod/base.qcow2        the imported base disk
 *   dist/images/prod/00_base.qcow2     one overlay per layer, backed by the one before
 *   dist/images/prod/00_base.digest    sha256 identity of the chain up to this layer
 *   dist/images/prod/00_base.*         its other companion files (below)
 *   dist/images/prod/image.qcow2       link to the last layer (or a flattened file)
 */
export class ImageLayout {
  /** Workspace-relative folder of this image's outputs. */
  readonly dir: string;

  constructor(imageName: string, distDir: string = DEFAULT_DIST_DIR) {
    this.dir = path.posix.join(distDir, imageName);
  }

  get base(): string {
    return path.posix.join(this.dir, 'base.qcow2');
  }

  layer(folder: string): string {
    return path.posix.join(this.dir, `${folder}.qcow2`);
  }

  get image(): string {
    return path.posix.join(this.dir, 'image.qcow2');
  }
}

/**
 * The files that sit beside a layer's (or base's) qcow2, each named as the
 * qcow2 with its own suffix instead of `.qcow2`.
 */
const COMPANION_SUFFIXES = { digest: '.digest', manifest: '.manifest.json', snapshot: '.snapshot.json.gz', ref: '.ref' } as const;

function companionOf(qcow2Path: string, suffix: string): string {
  return qcow2Path.replace(/\.qcow2$/, '') + suffix;
}

/** The digest file that sits beside a qcow2 (`10_update.qcow2` → `10_update.digest`). */
export function digestPathFor(qcow2Path: string): string {
  return companionOf(qcow2Path, COMPANION_SUFFIXES.digest);
}

/** What a layer changed, written beside its qcow2 (`10_update.qcow2` → `10_update.manifest.json`). */
export function manifestPathFor(qcow2Path: string): string {
  return companionOf(qcow2Path, COMPANION_SUFFIXES.manifest);
}

/**
 * The full file listing a build-layer build ends with (`10_update.qcow2` →
 * `10_update.snapshot.json.gz`): the next layer's build starts from it
 * instead of walking the root it has just mounted.
 */
export function snapshotPathFor(qcow2Path: string): string {
  return companionOf(qcow2Path, COMPANION_SUFFIXES.snapshot);
}

/** In blob mode, the ref that stands for a qcow2 in dist/ and in Nx's cache (`10_update.qcow2` → `10_update.ref`). */
export function refPathFor(qcow2Path: string): string {
  return companionOf(qcow2Path, COMPANION_SUFFIXES.ref);
}

/**
 * Where `file` is written before a rename puts it in place: a hidden file
 * beside it (`.10_update.qcow2.partial`); `writer` (e.g. a pid) keeps apart
 * writers that may run at once (`.10_update.qcow2.1234.partial`).
 */
export function partialPathFor(file: string, writer?: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}${writer === undefined ? '' : `.${writer}`}.partial`);
}

/** The folder, in an image's output folder, of the work folders its builds attach disks under. */
export function workFoldersIn(imageDistDir: string): string {
  return path.join(imageDistDir, '.vmlb');
}

/** The work folder of one layer build (`<dist>/<image>/.vmlb/<layer>`): what it attaches is recorded there. */
export function workFolderFor(imageDistDir: string, layer: string): string {
  return path.join(workFoldersIn(imageDistDir), layer);
}

/** What sits beside a layer's qcow2 in its image folder, by suffix (blob mode: `.ref`). */
const LAYER_FILE_SUFFIXES = ['.qcow2', ...Object.values(COMPANION_SUFFIXES)];

/** A layer's file name without its suffix: `NN_name` as a layer folder is named. */
const LAYER_FILE = new RegExp(`^[0-9]{2,}_[A-Za-z0-9._-]+(${LAYER_FILE_SUFFIXES.map((suffix) => suffix.replace(/\./g, '\\.')).join('|')})$`);

/**
 * The files in an image folder (`names`, as listed) that belong to no
 * current layer: left by a layer folder that was renamed or removed. Nothing
 * reads them; a build only reports them. `layers`: the current layer
 * folders (`10_update`).
 */
export function staleLayerFiles(names: readonly string[], layers: readonly string[]): string[] {
  const current = new Set(layers.flatMap((layer) => LAYER_FILE_SUFFIXES.map((suffix) => `${layer}${suffix}`)));
  return names.filter((name) => LAYER_FILE.test(name) && !current.has(name)).sort();
}
