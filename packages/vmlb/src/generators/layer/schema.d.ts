import type { ScriptKind } from '../../lib/image/hints';

// Nx's command line hands numeric-looking arguments (`--image 2024`,
// `--number 15`) to generators as numbers, hence `| number` below.
export interface LayerGeneratorSchema {
  /** The layer's name: the part of its folder after `NN_`, e.g. `update` for `10_update`. */
  name: string | number;
  /** The image that gets the layer: its name, or its workspace-relative folder. */
  image: string | number;
  /** The layer's script. Default `build-layer`. */
  kind?: ScriptKind;
  /** The layer's number, its place in the chain, e.g. `15`. Default: 10 past the last layer. */
  number?: string | number;
  /** Leave the new script as written instead of running the workspace's formatter. */
  skipFormat?: boolean;
}
