import type { ProjectGraph } from '@nx/devkit';
import { parseLayerFolder } from '../image/layer-discovery';

/**
 * `3/6`: where a layer sits in its image's chain, counted from the project
 * graph at run time (not from target options, which Nx hashes: adding a
 * layer on top must not change the keys of the layers below).
 */
export function layerPosition(graph: ProjectGraph | undefined, imageName: string, layer: string): string | undefined {
  if (!graph) return undefined;
  const layers = Object.values(graph.nodes)
    .filter((node) => node.data.tags?.includes('vmlb:layer') && node.data.tags.includes(`vmlb:image:${imageName}`))
    .map((node) => parseLayerFolder(node.data.root.split('/').at(-1)!)?.number)
    .filter((number): number is number => number !== undefined)
    .sort((a, b) => a - b);
  const own = parseLayerFolder(layer)?.number;
  const index = own === undefined ? -1 : layers.indexOf(own);
  return index === -1 ? undefined : `${index + 1}/${layers.length}`;
}
