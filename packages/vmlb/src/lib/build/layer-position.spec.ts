import type { ProjectGraph } from '@nx/devkit';
import { layerPosition } from './layer-position';

/** A graph with the layer projects of the given images, as the plugin tags them. */
function graphOf(images: Record<string, string[]>): ProjectGraph {
  const nodes: ProjectGraph['nodes'] = {};
  for (const [image, layers] of Object.entries(images)) {
    for (const layer of layers)
      nodes[`${image}-${layer}`] = {
        name: `${image}-${layer}`,
        type: 'lib',
        data: { root: `images/${image}/${layer}`, tags: ['vmlb:layer', `vmlb:image:${image}`] },
      };
    nodes[`image-${image}`] = { name: `image-${image}`, type: 'lib', data: { root: `images/${image}`, tags: ['vmlb:image'] } };
  }
  return { nodes, dependencies: {} };
}

describe('layerPosition', () => {
  const graph = graphOf({ prod: ['00_base', '10_update', '20_packages', '105_late'], tiny: ['00_disk', '10_hello'] });

  it('counts the layers of its own image only, in chain order', () => {
    expect(layerPosition(graph, 'prod', '20_packages')).toBe('3/4');
    expect(layerPosition(graph, 'prod', '105_late')).toBe('4/4');
    expect(layerPosition(graph, 'tiny', '00_disk')).toBe('1/2');
  });

  it('says nothing without a graph or for a layer it does not know', () => {
    expect(layerPosition(undefined, 'prod', '20_packages')).toBeUndefined();
    expect(layerPosition(graph, 'prod', '30_app')).toBeUndefined();
  });
});
