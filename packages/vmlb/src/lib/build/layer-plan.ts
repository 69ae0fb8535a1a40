import type { ScriptHints, ScriptKind } from '../image/hints';

/** Everything needed to build one layer; every path absolute. */
export interface LayerBuildPlan {
  imageName: string;
  layer: string;
  layerDir: string;
  script: string;
  kind: ScriptKind;
  hints: ScriptHints;
  parent: string;
  output: string;
  rootPartition?: number;
  nbdDevice?: string;
  /** Absolute workspace root, recorded in the manifest's build record. */
  workspaceRoot: string;
}
