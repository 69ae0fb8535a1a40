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
 *   dist/images/prod/image.qcow2       link to the last layer (or a flattened file)
 */
export class ImageLayout {
  /** Workspace-relative folder of this image's outputs. */
  readonly dir: string;

  constructor(
    imageName: string,
    distDir: string = DEFAULT_DIST_DIR,
  ) {
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

/** The digest file that sits beside a qcow2 (`10_update.qcow2` → `10_update.digest`). */
export function digestPathFor(qcow2Path: string): string {
  return qcow2Path.replace(/\.qcow2$/, '') + '.digest';
}

/** What a layer changed, written beside its qcow2 (`10_update.qcow2` → `10_update.manifest.json`). */
export function manifestPathFor(qcow2Path: string): string {
  return qcow2Path.replace(/\.qcow2$/, '') + '.manifest.json';
}

/**
 * The full file listing a build-layer build ends with (`10_update.qcow2` →
 * `10_update.snapshot.json.gz`): the next layer's build starts from it
 * instead of walking the root it has just mounted.
 */
export function snapshotPathFor(qcow2Path: string): string {
  return qcow2Path.replace(/\.qcow2$/, '') + '.snapshot.json.gz';
}

/** What sits beside a layer's qcow2 in its image folder, by suffix (blob mode: `.ref`). */
const LAYER_FILE_SUFFIXES = ['.qcow2', '.digest', '.manifest.json', '.snapshot.json.gz', '.ref'];

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
