import { existsSync, realpathSync } from 'node:fs';
import * as path from 'node:path';
import type { ProjectGraph } from '@nx/devkit';
import { nxDevkit } from '../util/nx-devkit';
import type { ProjectOutputHint } from '../image/hints';

/** One `# project-output`, found on the host: what is bound read-only where in the chroot. */
export interface ProjectOutputMount {
  /** Real path of the output on the host, inside the workspace. */
  source: string;
  /** Absolute path inside the image. */
  mountPoint: string;
  /** `greeter:build`, for messages. */
  label: string;
}

/**
 * Where each `# project-output` of a script lies on the host: the target's
 * one declared output, which must exist (Nx ran or restored the target just
 * before) and stay inside the workspace even through symlinks.
 */
export function resolveProjectOutputs(
  hints: readonly ProjectOutputHint[],
  graph: ProjectGraph | undefined,
  workspaceRoot: string,
  script: string,
): ProjectOutputMount[] {
  return hints.map((hint) => {
    const label = `${hint.project}:${hint.target}`;
    const fail = (problem: string): never => {
      throw new Error(`${script}: # project-output ${label} ${hint.mountPoint}: ${problem}`);
    };
    const node =
      graph?.nodes[hint.project] ??
      fail(`there is no project '${hint.project}' in the project graph. Fix the project name in the hint; nx show projects lists them.`);
    if (!node.data.targets?.[hint.target]) fail(`project '${hint.project}' has no target '${hint.target}'.`);
    const outputs = nxDevkit().getOutputsForTargetAndConfiguration({ project: hint.project, target: hint.target }, {}, node);
    if (outputs.length !== 1 || /[*?[{]/.test(outputs[0])) {
      fail(
        `${label} must declare exactly one output folder or file to ship, and it declares ${outputs.length ? outputs.join(', ') : 'none'}. ` +
          `Give the layer a target whose outputs are one folder, e.g. ["{workspaceRoot}/dist/${node.data.root}"].`,
      );
    }
    const candidate = path.resolve(workspaceRoot, outputs[0]);
    if (!existsSync(candidate)) {
      fail(`${label} did not write its output ${outputs[0]}. Check that the target writes there (nx run ${label}), or fix its "outputs".`);
    }
    const source = realpathSync(candidate);
    const root = realpathSync(workspaceRoot);
    if (source !== root && !source.startsWith(`${root}/`))
      fail(`${outputs[0]} resolves to ${source}, outside the workspace; a layer ships only files of the workspace.`);
    if (source === root) fail(`${label}'s output is the whole workspace; ship a folder of it.`);
    return { source, mountPoint: hint.mountPoint, label };
  });
}
