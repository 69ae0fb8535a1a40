import type { Qcow2Compat } from '../disk/qcow2';
import type { ScriptHints, ScriptKind } from '../image/hints';
import type { BuildSecret } from './build-secrets';
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
  /** Where this machine's cache mounts live (lib/build/cache-mounts); needed when the hints name any. */
  cacheMountsRoot?: string;
  /** `# secret` hints with their values from the environment (lib/build/build-secrets). */
  secrets?: BuildSecret[];
  /** Absolute workspace root, recorded in the manifest's build record. */
  workspaceRoot: string;
  /** image.json's declared variables as this build passes them to the script (lib/image/script-env). */
  scriptEnv: Record<string, string>;
  /** image.json's qcow2Compat: the compatibility level of the new overlay. */
  qcow2Compat?: Qcow2Compat;
  /**
   * `VMLB_PAUSE_AT=failed`: a script that fails leaves its layer attached
   * for a look before the build fails: with a `shell` on the terminal, or
   * `held` until the build is interrupted.
   */
  keepFailed?: 'shell' | 'held';
}
