import type { CreateNodesResult, ExecutorContext, NxJsonConfiguration, ProjectGraphProjectNode } from '@nx/devkit';
import type { readTargetDefaultsForTarget as ReadTargetDefaults } from '@nx/devkit/internal';
import { nxDevkitInternal } from '../util/nx-devkit';

/**
 * The executors whose target settings decide what a build writes and how it
 * is cached. nx.json gets an empty targetDefaults entry for each (the init
 * generator writes them): Nx prefers an executor's entry to a target name's,
 * so a workspace's `build` defaults never reach vmlb's targets.
 */
export const SHIELDED_EXECUTORS = ['vmlb:layer', 'vmlb:base', 'vmlb:image', 'vmlb:flatten'] as const;

/** Settings a default may give vmlb's targets: they change neither what is built nor how it is cached. */
const HARMLESS_FIELDS = new Set(['parallelism', 'metadata']);

/** One targetDefaults key that reaches vmlb's targets: what it sets, and which of them it reaches. */
interface Conflict {
  fields: Set<string>;
  targets: Set<string>;
  executors: Set<string>;
}

/**
 * Nx merges nx.json's targetDefaults over what a plugin infers, so a usual
 * `"build": {"dependsOn": ["^build"], "inputs": [...], "cache": true}`
 * would replace a layer's parent dependency, its cache key and its
 * nocache/noshare setting. Returns the problem for every key that would
 * change a vmlb target, with the fix; undefined when none does.
 *
 * The plugin only warns (a failing project graph would stop `nx g
 * vmlb:init`, the fix itself); every vmlb task that builds or caches
 * stops on it before it touches anything (`checkTargetDefaults`).
 */
export function targetDefaultsProblem(
  nxJson: NxJsonConfiguration | undefined,
  results: ReadonlyArray<readonly [string, CreateNodesResult]>,
): Error | undefined {
  const targetDefaults = nxJson?.targetDefaults;
  if (!targetDefaults || Object.values(targetDefaults).every(onlyHarmless)) return undefined;
  const { readTargetDefaultsForTarget } = nxDevkitInternal();
  const conflicts = new Map<string, Conflict>();
  for (const [, result] of results) {
    for (const [root, project] of Object.entries(result.projects ?? {})) {
      const node: ProjectGraphProjectNode = { name: project.name!, type: 'lib', data: { ...project, root } };
      for (const [targetName, target] of Object.entries(project.targets ?? {})) {
        const context = { projectName: project.name, projectNode: node, sourcePlugin: 'vmlb' };
        const applied = readTargetDefaultsForTarget(targetName, targetDefaults, target.executor, context);
        const fields = Object.keys(applied ?? {}).filter((field) => !HARMLESS_FIELDS.has(field));
        if (fields.length === 0) continue;
        const key = winningKey(targetDefaults, targetName, target.executor, context);
        const conflict = conflicts.get(key) ?? { fields: new Set(), targets: new Set(), executors: new Set() };
        fields.forEach((field) => conflict.fields.add(field));
        conflict.targets.add(targetName);
        if (target.executor) conflict.executors.add(target.executor);
        conflicts.set(key, conflict);
      }
    }
  }
  if (conflicts.size === 0) return undefined;
  return new Error([...conflicts].map(([key, conflict]) => describeConflict(key, conflict)).join('\n'));
}

/**
 * A targetDefaults value (one entry, or Nx's array of filtered entries)
 * that sets nothing but harmless fields, like the empty entries vmlb:init
 * writes: it cannot change a vmlb target whichever target it reaches.
 */
function onlyHarmless(value: unknown): boolean {
  const entries = Array.isArray(value) ? value : [value];
  return entries.every((entry) => Object.keys(entry ?? {}).every((field) => HARMLESS_FIELDS.has(field) || field === 'filter'));
}

/** The targetDefaults key Nx takes for a target: its executor's, else its name's, else the first matching glob. */
function winningKey(
  targetDefaults: NonNullable<NxJsonConfiguration['targetDefaults']>,
  targetName: string,
  executor: string | undefined,
  context: Parameters<typeof ReadTargetDefaults>[3],
): string {
  const { readTargetDefaultsForTarget } = nxDevkitInternal();
  const matching = Object.keys(targetDefaults).filter(
    (key) => readTargetDefaultsForTarget(targetName, { [key]: targetDefaults[key] }, executor, context) !== null,
  );
  return matching.find((key) => key === executor) ?? matching.find((key) => key === targetName) ?? matching[0];
}

/** The message for one key: where, what it sets, what it would break, and the fix. */
function describeConflict(key: string, conflict: Conflict): string {
  const fields = [...conflict.fields].sort().join(', ');
  const reached = `the ${[...conflict.targets].sort().join(', ')} targets vmlb infers (${[...conflict.executors].sort().join(', ')})`;
  const where = `nx.json: targetDefaults["${key}"] sets ${fields} for ${reached}.`;
  const harm =
    "Nx would put these in place of vmlb's own, which keep each layer on its parent, its cache key exact and nocache/noshare layers out of the caches.";
  if (conflict.executors.has(key)) {
    return `${where} ${harm} Remove them from that entry (an empty entry is fine): vmlb decides these targets' inputs, outputs, dependencies and caching.`;
  }
  const shields = [...new Set([...SHIELDED_EXECUTORS, ...conflict.executors])].map((executor) => `"${executor}": {}`).join(', ');
  return (
    `${where} ${harm} Give each vmlb executor an empty entry of its own, which Nx prefers to a target name's defaults: ` +
    `add ${shields} to targetDefaults (npx nx g vmlb:init adds them).`
  );
}

/** Stops a vmlb task whose target nx.json's targetDefaults changed (see targetDefaultsProblem). */
export function checkTargetDefaults(context: ExecutorContext): void {
  const project = context.projectsConfigurations?.projects?.[context.projectName ?? ''];
  if (!project) return;
  const problem = targetDefaultsProblem(context.nxJsonConfiguration, [[project.root, { projects: { [project.root]: project } }]]);
  if (problem) throw problem;
}
