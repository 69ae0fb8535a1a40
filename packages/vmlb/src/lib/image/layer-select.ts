import type { ImageInfo, LayerInfo } from './layer-discovery';

/** The base disk, in the places a layer may be named: the bottom of every chain. */
export const BASE_NAME = 'base';

/** A point of an image's chain that a command names: the base disk, or one layer. */
export type ChainPoint = { kind: 'base' } | { kind: 'layer'; layer: LayerInfo };

/**
 * The point of the chain `given` names: a layer folder (`10_hello`), its
 * number (`10`, `010`: numbers are unique in an image), or `base`. Users
 * type the number; scripts and docs write the folder. `option` is how the
 * command line spelled it, for the message that lists what exists.
 */
export function selectChainPoint(image: ImageInfo, given: string, option: string): ChainPoint {
  const wanted = given.trim();
  if (wanted === BASE_NAME) return { kind: 'base' };
  const layer =
    image.layers.find((candidate) => candidate.folder === wanted) ??
    (/^[0-9]+$/.test(wanted) ? image.layers.find((candidate) => candidate.number === Number(wanted)) : undefined);
  if (layer) return { kind: 'layer', layer };
  const names = [BASE_NAME, ...image.layers.map((candidate) => candidate.folder)];
  throw new Error(`${option} '${given}' is not a layer of image ${image.name} (${image.root}); give a layer folder or its number: ${names.join(', ')}.`);
}

/** The chain point's name as the messages and file names use it: the layer folder, or `base`. */
export function chainPointName(point: ChainPoint): string {
  return point.kind === 'base' ? BASE_NAME : point.layer.folder;
}
