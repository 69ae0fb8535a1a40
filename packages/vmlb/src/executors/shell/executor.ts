import { existsSync } from 'node:fs';
import * as path from 'node:path';
import type { ExecutorContext, ProjectGraph } from '@nx/devkit';
import { isCI } from '../../lib/util/ci';
import { materialiseChain } from '../../lib/blob/chain';
import { openBlobStores } from '../../lib/blob/config';
import { checkBindSources } from '../../lib/build/bind-sources';
import { type LayerShellPlan, runLayerShell } from '../../lib/build/layer-shell';
import { checkPrerequisites, layerBuildTools } from '../../lib/build/prerequisites';
import { type ProjectOutputMount, resolveProjectOutputs } from '../../lib/build/project-outputs';
import { checkTargetDefaults } from '../../lib/cache-identity/target-defaults-guard';
import { ImageLayout } from '../../lib/image/dist-layout';
import { type ImageInfo, discoverImage } from '../../lib/image/layer-discovery';
import { chainPointName, selectChainPoint } from '../../lib/image/layer-select';
import { reportFailure } from '../../lib/util/executor-errors';
import { withInterruptSignal } from '../../lib/util/interrupt';
import { shellQuote } from '../../lib/util/shell-quote';
import type { ShellExecutorSchema } from './schema';

export interface ShellPlan extends LayerShellPlan {
  /** The task, for messages (`image-tiny:shell`). */
  task: string;
  blobs: boolean;
  /** `# project-output` hints whose output is not there: not mounted, said. */
  missingOutputs: string[];
}

/**
 * The command line as typed after the target: leading `--layer L` /
 * `--layer=L` (Nx also parsed them into `layer`), then the command. Any
 * other leading option is a typo, not a command.
 */
export function splitArgs(args: readonly string[]): { layer?: string; command: string[] } {
  let layer: string | undefined;
  let index = 0;
  for (; index < args.length; index++) {
    const arg = args[index];
    if (arg === '--') {
      index++;
      break;
    }
    if (arg.startsWith('--layer=')) layer = arg.slice('--layer='.length);
    else if (arg === '--layer' && index + 1 < args.length) layer = args[++index];
    else if (arg.startsWith('-')) throw new Error(`${arg} is not an option of the shell target (it takes --layer); a command goes after the options.`);
    else break;
  }
  return { layer, command: args.slice(index) };
}

/** Options resolved once: the layer and its files, the layer folder and its mounts, the command, and whether someone can type. */
export function normalizeOptions(
  options: ShellExecutorSchema,
  workspaceRoot: string,
  task: string,
  graph?: ProjectGraph,
  terminal = { stdinIsTTY: process.stdin.isTTY === true, ci: Boolean(isCI()) },
): ShellPlan {
  const image = discoverImage(workspaceRoot, options.imageRoot);
  const layout = new ImageLayout(image.name, options.distDir);
  const typed = splitArgs(options.args ?? []);
  const given = typed.layer ?? (options.layer === undefined ? undefined : String(options.layer));
  const point = given === undefined ? topOf(image) : selectChainPoint(image, given, '--layer');
  const layer = point.kind === 'layer' ? point.layer : undefined;
  const pointName = chainPointName(point);
  const interactive = terminal.stdinIsTTY && !terminal.ci;
  if (typed.command.length === 0 && !interactive) {
    throw new Error(
      `nx run ${task} opens an interactive shell, which needs a terminal${terminal.ci ? ' (this is CI)' : ', and standard input is not one'}. ` +
        `Run a command instead: nx run ${task} -- <command>, e.g. nx run ${task} -- cat /etc/os-release. ` +
        `On a terminal, Nx gives this task (it has no dependencies) the keyboard.`,
    );
  }
  const layerDir = path.resolve(workspaceRoot, layer?.dir ?? image.root);
  const hints = layer?.kind === 'build-layer' ? layer.hints : undefined;
  if (hints) checkBindSources({ workspaceRoot, layerDir }, hints.bindMounts, layer!.script);
  const outputs = projectOutputsOf(hints?.projectOutputs ?? [], graph, workspaceRoot, layer?.script ?? '');
  return {
    task,
    imageName: image.name,
    pointName,
    qcow2: path.resolve(workspaceRoot, point.kind === 'base' ? layout.base : layout.layer(pointName)),
    imageDistDir: path.resolve(workspaceRoot, layout.dir),
    layerDir,
    workspaceRoot,
    bindMounts: hints?.bindMounts ?? [],
    partitionMounts: hints?.partitionMounts ?? [],
    projectOutputs: outputs.mounts,
    missingOutputs: outputs.missing,
    rootPartition: image.config.rootPartition,
    command: typed.command.length ? `cd /mnt && ${typed.command.map(shellQuote).join(' ')}; exit $?` : undefined,
    terminal: interactive,
    blobs: options.blobs === true,
  };
}

/** The last layer, or the base of an image without layers. */
function topOf(image: ImageInfo) {
  const top = image.layers[image.layers.length - 1];
  return top ? ({ kind: 'layer', layer: top } as const) : ({ kind: 'base' } as const);
}

/** The layer's `# project-output` mounts whose output is there; the others are left out and said (the shell target builds nothing first). */
function projectOutputsOf(hints: Parameters<typeof resolveProjectOutputs>[0], graph: ProjectGraph | undefined, root: string, script: string) {
  const mounts: ProjectOutputMount[] = [];
  const missing: string[] = [];
  for (const hint of hints) {
    try {
      mounts.push(...resolveProjectOutputs([hint], graph, root, script));
    } catch (error) {
      missing.push(`${(error as Error).message} (not mounted in the shell; nx run ${hint.project}:${hint.target} builds it)`);
    }
  }
  return { mounts, missing };
}

export default async function shellExecutor(options: ShellExecutorSchema, context: ExecutorContext): Promise<{ success: boolean }> {
  return reportFailure(() =>
    withInterruptSignal(async (signal) => {
      checkTargetDefaults(context);
      const task = `${context.projectName}:${context.targetName}`;
      const plan = normalizeOptions(options, context.root, task, context.projectGraph);
      const log = (message: string) => console.log(message);
      if (plan.blobs) await materialiseChain(plan.qcow2, await openBlobStores(context.root), { log, signal });
      if (!existsSync(plan.qcow2)) {
        const builds = plan.pointName === 'base' ? `nx run image-${plan.imageName}:base` : `nx build ${plan.imageName}-${plan.pointName}`;
        throw new Error(
          `Layer ${plan.pointName} of image ${plan.imageName} is not built here (${path.relative(context.root, plan.qcow2)} is missing). ` +
            `Build it first: ${builds} (or nx build image-${plan.imageName}).`,
        );
      }
      checkPrerequisites([...layerBuildTools(false), ...(plan.terminal ? (['script'] as const) : [])], { fuse: true });
      plan.missingOutputs.forEach((message) => console.warn(`vmlb: warning: ${message}`));
      log(
        `vmlb: ${plan.command ? 'running the command' : 'a shell'} in layer ${plan.pointName} of image ${plan.imageName}, as its build's script ran, ` +
          `on a throwaway overlay: what it writes is discarded, ${path.relative(context.root, plan.qcow2)} never changes.`,
      );
      const exitCode = await runLayerShell(plan, log, signal);
      if (exitCode !== 0)
        throw new Error(`The ${plan.command ? 'command' : 'shell'} in layer ${plan.pointName} of image ${plan.imageName} exited with code ${exitCode}.`);
    }),
  );
}
