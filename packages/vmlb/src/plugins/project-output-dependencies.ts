import { type CreateDependencies, type ProjectConfiguration, type RawProjectGraphDependency, DependencyType } from '@nx/devkit';
import type { ProjectOutputHint } from '../lib/image/hints';
import { similarNames } from '../lib/util/similar-names';

/** The layer executor; only its targets carry `projectOutputs`. */
const LAYER_EXECUTOR = 'vmlb:layer';

/**
 * `# project-output` as graph edges: each layer depends on the projects
 * whose outputs it ships, so `nx affected` and `nx graph` see them. Every
 * hint is checked here, against the whole workspace, so that a missing
 * project, target or output is a project-graph error naming the layer.
 */
export const createDependencies: CreateDependencies = (_options, context) => {
  const dependencies: RawProjectGraphDependency[] = [];
  const problems: string[] = [];
  for (const [name, project] of Object.entries(context.projects)) {
    for (const target of Object.values(project.targets ?? {})) {
      if (target.executor !== LAYER_EXECUTOR) continue;
      const options = (target.options ?? {}) as { script?: string; projectOutputs?: ProjectOutputHint[] };
      for (const hint of options.projectOutputs ?? []) {
        const problem = checkProjectOutput(hint, context.projects);
        if (problem) problems.push(`${options.script ?? name}: # project-output ${hint.project}:${hint.target} ${hint.mountPoint}: ${problem}`);
        else dependencies.push({ source: name, target: hint.project, type: DependencyType.static, sourceFile: options.script });
      }
    }
  }
  if (problems.length) throw new Error(problems.join('\n'));
  return dependencies;
};

/** What is wrong with a hint's project and target, with the fix; undefined when nothing is. */
function checkProjectOutput(hint: ProjectOutputHint, projects: Record<string, ProjectConfiguration>): string | undefined {
  const project = projects[hint.project];
  if (!project) {
    const near = similarNames(hint.project, Object.keys(projects));
    return `there is no project '${hint.project}'${near.length ? ` (did you mean ${near.join(', ')}?)` : ''}. Fix the project name in the hint; nx show projects lists them.`;
  }
  const target = project.targets?.[hint.target];
  if (!target) {
    const targets = Object.keys(project.targets ?? {});
    return `project '${hint.project}' has no target '${hint.target}' (it has: ${targets.join(', ') || 'none'}). Name the target that builds what the layer ships: # project-output ${hint.project}:<target> ${hint.mountPoint}`;
  }
  if (!target.outputs?.length) {
    return `${hint.project}:${hint.target} declares no outputs, so there is nothing to ship and nothing to key the layer on. Add "outputs" to that target, e.g. ["{workspaceRoot}/dist/${project.root}"].`;
  }
  return undefined;
}
