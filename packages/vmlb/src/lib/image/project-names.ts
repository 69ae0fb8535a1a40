/**
 * Nx project names. An image is `image-<image>`; a layer is
 * `<image>-<layer folder>`, e.g. `prod-10_update`. Layer folders always
 * start with digits, so a layer project can only collide with an image
 * project when an image is itself named like a layer (`10_x`) and another
 * is named `image`; the plugin reports such a clash instead of merging them.
 */
export function imageProjectName(image: string): string {
  return `image-${image}`;
}

export function layerProjectName(image: string, layerFolder: string): string {
  return `${image}-${layerFolder}`;
}
