import type { ExecutorContext, ProjectConfiguration } from '@nx/devkit';
import type { ChainLocation } from '../image/image-chain';
import { discoverImage } from '../image/layer-discovery';
import { type ChainPoint, chainPointName, selectChainPoint } from '../image/layer-select';
import type { Log } from '../util/log';

/**
 * Building an image only up to one of its layers, from inside an image
 * task. Nx runs everything a target's dependsOn names before the target,
 * whatever its options, so `--upTo` cannot take the layers above out of a
 * run; with `--exclude-task-dependencies` Nx runs the image task alone, and
 * the task asks Nx for the one task that builds its chain up to that layer.
 */

/** The Nx task (`project:target`) that builds a point of an image's chain: its layer's build, or the image's base import. */
export function chainTaskId(projects: Record<string, ProjectConfiguration>, imageName: string, point: ChainPoint): string {
  const wanted = (executor: string | undefined, options: Record<string, unknown> | undefined) =>
    options?.imageName === imageName && (point.kind === 'base' ? executor === 'vmlb:base' : executor === 'vmlb:layer' && options?.layer === point.layer.folder);
  for (const [name, project] of Object.entries(projects)) {
    for (const [target, configuration] of Object.entries(project.targets ?? {})) {
      if (wanted(configuration.executor, configuration.options)) return `${project.name ?? name}:${target}`;
    }
  }
  throw new Error(`Image ${imageName}: no Nx task builds ${chainPointName(point)} (is the vmlb plugin registered in nx.json?).`);
}

/**
 * Runs `nx run <task>` in the workspace, its output on ours, and waits for
 * it: Nx runs the task's own dependencies (the layers below) with its cache
 * as any run does, and `NX_SKIP_NX_CACHE`, which Nx gives every task of a
 * `--skip-nx-cache` run, carries that on. An interrupt is passed on as
 * SIGINT, so the layer being built releases what it attached.
 */
export async function runNxTask(workspaceRoot: string, taskId: string, signal?: AbortSignal): Promise<void> {
  const nx = require.resolve('nx/bin/nx.js', { paths: [workspaceRoot] });
  // Loaded here: an image task without --upTo should not pay for it at start-up.
  const { execa } = await import('execa');
  const result = await execa(process.execPath, [nx, 'run', taskId], {
    cwd: workspaceRoot,
    stdio: 'inherit',
    reject: false,
    cancelSignal: signal,
    killSignal: 'SIGINT',
    // The nested run passes SIGINT on to its tasks and waits for them: no SIGKILL may cut their release short.
    forceKillAfterDelay: false,
  });
  if (result.isCanceled) throw new Error(`nx run ${taskId} was interrupted.`);
  if (result.exitCode !== 0) throw new Error(`nx run ${taskId} failed (exit code ${result.exitCode ?? result.signal}); its output is above.`);
}

/**
 * `--upTo` on an image target: when Nx has not run the task that builds the
 * chain up to that layer (the run excluded the target's dependencies),
 * that task is run now, and only it. When Nx ran the whole chain before
 * this task, the layers above were built too: said, with the way to avoid it.
 */
export async function buildChainUpTo(
  location: ChainLocation & { upTo: string | number },
  context: ExecutorContext,
  log: Log,
  signal?: AbortSignal,
): Promise<void> {
  if (!location.imageRoot) return;
  const image = discoverImage(context.root, location.imageRoot);
  const point = selectChainPoint(image, String(location.upTo), '--upTo');
  const projects = context.projectsConfigurations?.projects ?? {};
  const taskId = chainTaskId(projects, image.name, point);
  const ran = new Set(Object.keys(context.taskGraph?.tasks ?? {}));
  const name = chainPointName(point);
  if (!ran.has(taskId)) {
    log(`vmlb: image ${image.name} up to ${name}: nx run ${taskId} (the layers above ${name} are not built)`);
    await runNxTask(context.root, taskId, signal);
    return;
  }
  const above = image.layers
    .filter((layer) => point.kind === 'base' || layer.number > point.layer.number)
    .filter((layer) => ran.has(chainTaskId(projects, image.name, { kind: 'layer', layer })));
  if (above.length) {
    log(
      `vmlb: image ${image.name} up to ${name}: Nx also ran ${above.map((layer) => layer.folder).join(', ')} (built, or restored from a cache), because the ${context.targetName} target ` +
        `depends on the whole chain; add --exclude-task-dependencies to build only up to ${name}.`,
    );
  }
}
