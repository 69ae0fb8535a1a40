import type { ScriptHints, ScriptKind } from '../image/hints';
import type { ProjectOutputMount } from './project-outputs';

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
  /** `# project-output` hints, found on the host; bound read-only in the chroot. */
  projectOutputs: ProjectOutputMount[];
  /** Absolute workspace root, recorded in the manifest's build record. */
  workspaceRoot: string;
  /**
   * `VMLB_PAUSE_AT=failed`: a script that fails leaves its layer attached
   * for a look before the build fails: with a `shell` on the terminal, or
   * `held` until the build is interrupted.
   */
  keepFailed?: 'shell' | 'held';
}
