/**
 * The names vmlb looks for in a workspace. Kept apart from the code that
 * reads image folders: the plugin's entry needs only these, and Nx loads
 * that entry in a fresh worker for every run with tasks.
 */

/**
 * A layer folder: two or more digits (its place in the chain), an
 * underscore, then a name. `00_base`, `10_update`, `105_late-fix`.
 */
export const LAYER_FOLDER_PATTERN = /^([0-9]{2,})_([A-Za-z0-9._-]+)$/;

/** Image folder names; they become part of Nx project names. */
export const IMAGE_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export const IMAGE_CONFIG_FILE = 'image.json';

/** The folder the generators put images in, and where an image.json is always an image's. */
export const DEFAULT_IMAGES_DIR = 'images';

/**
 * Every file that can make a folder an image, anywhere in the workspace:
 * an image.json, and layer scripts (so that a folder with layers but no
 * image.json is reported instead of silently ignored).
 */
export const IMAGE_FILES_GLOB = `**/{${IMAGE_CONFIG_FILE},*/build-layer,*/modify-disk}`;
