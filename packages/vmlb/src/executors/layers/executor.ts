import * as path from 'node:path';
import { cacheDir, type ExecutorContext, type ProjectGraph } from '@nx/devkit';
import { reportFailure } from '../../lib/util/executor-errors';
import { describeHints } from '../../lib/image/hints';
import { discoverImage } from '../../lib/image/layer-discovery';
import { imageChainFiles, imageRootFinder } from '../../lib/image/image-chain';
import { type LayerStatus, layerStatuses, type RemoteLookup, type StatusLayer } from '../../lib/inspect/layer-status';
import { NxTaskHashes } from '../../lib/cache-identity/nx-task-hashes';
import { imageProjectName, layerProjectName } from '../../lib/image/project-names';
import { probeRemoteCache } from '../../lib/cache-identity/remote-cache-probe';
import { formatTable } from '../../lib/util/text-table';
import { formatBytes } from '../../lib/util/units';
import type { LayersExecutorSchema } from './schema';

/** The layers of an image as the status model sees them, base first, with the Nx task of each; a derived image's chain starts in the image it is built on. */
export function statusLayers(options: LayersExecutorSchema, workspaceRoot: string, projectGraph: ProjectGraph): StatusLayer[] {
  const projects = Object.fromEntries(Object.entries(projectGraph.nodes).map(([name, node]) => [name, { root: node.data.root }]));
  const files = imageChainFiles(workspaceRoot, options.imageRoot, options.distDir, imageRootFinder(projects));
  const own = files[files.length - 1]?.image ?? options.imageName;
  return files.map((file): StatusLayer => {
    const name = file.image === own ? file.layer : `${file.image}/${file.layer}`;
    const qcow2 = path.resolve(workspaceRoot, file.qcow2);
    if (!file.info) {
      const project = imageProjectName(file.image);
      return { name, kind: 'base', hints: [], cacheability: 'cached', taskId: `${project}:${targetRunning(projectGraph, project, 'vmlb:base')}`, qcow2 };
    }
    const layer = file.info;
    const project = layerProjectName(file.image, layer.folder);
    return {
      name,
      kind: layer.kind,
      hints: describeHints(layer.hints),
      cacheability: layer.hints.nocache ? 'nocache' : layer.hints.noshare ? 'noshare' : 'cached',
      taskId: `${project}:${targetRunning(projectGraph, project, 'vmlb:layer')}`,
      qcow2,
    };
  });
}

/** The name of the project's target that runs `executor` (targets can be renamed in the plugin options). */
function targetRunning(projectGraph: ProjectGraph, project: string, executor: string): string {
  const targets = projectGraph.nodes[project]?.data.targets ?? {};
  const found = Object.entries(targets).find(([, target]) => target.executor === executor);
  if (!found) throw new Error(`Project ${project} has no target running ${executor}; is the vmlb plugin registered in nx.json?`);
  return found[0];
}

/** The remote cache lookup for this run, when a self-hosted remote cache is configured and not switched off. */
function remoteLookup(options: LayersExecutorSchema, env: NodeJS.ProcessEnv): RemoteLookup | undefined {
  const server = env.NX_SELF_HOSTED_REMOTE_CACHE_SERVER;
  if (!server || options.remote === false || env.NX_SKIP_REMOTE_CACHE === 'true') return undefined;
  const token = env.NX_SELF_HOSTED_REMOTE_CACHE_ACCESS_TOKEN || undefined;
  return async (hash) => {
    const result = await probeRemoteCache({ server, token, hash, env });
    if (result.verdict === 'available') return result.status === 200 ? 'hit' : 'miss';
    return { unknown: result.reason };
  };
}

export function formatStatusTable(rows: LayerStatus[]): string {
  const size = (bytes: number | null) => (bytes === null ? '-' : formatBytes(bytes));
  return formatTable(
    ['Layer', 'Kind', 'Hints', 'State', 'Task hash', 'Digest', 'Size', 'Disk', 'Last build', 'Changes'],
    rows.map((row) => [
      row.name,
      row.kind,
      row.hints.join(', ') || '-',
      row.note ? `${row.state} (${row.note})` : row.state,
      row.hash ?? '-',
      row.digest ? row.digest.slice(0, 12) : '-',
      size(row.fileSize),
      size(row.virtualSize),
      row.lastBuild ? `${row.lastBuild.seconds.toFixed(1)} s, ${row.lastBuild.finishedAt.slice(0, 16).replace('T', ' ')} UTC on ${row.lastBuild.host}` : '-',
      row.changes ?? '-',
    ]),
  );
}

export default async function layersExecutor(options: LayersExecutorSchema, context: ExecutorContext): Promise<{ success: boolean }> {
  return reportFailure(async () => {
    const layers = statusLayers(options, context.root, context.projectGraph);
    const { warnings, config } = discoverImage(context.root, options.imageRoot);
    // On stderr, so that --json stays one JSON document; with the Nx daemon on, this is where the user sees them.
    warnings.forEach((warning) => console.warn(`vmlb: warning: ${warning}`));
    // The whole dist folder: a derived image's chain runs through the folders of the images it is built on.
    const hashes = await NxTaskHashes.open(
      context.root,
      layers.map((layer) => layer.taskId),
      options.distDir,
    );
    let rows: LayerStatus[];
    try {
      rows = await layerStatuses(layers, {
        workspaceRoot: context.root,
        hash: (taskId, digests) => hashes.hash(taskId, digests),
        nxCacheDir: cacheDir,
        distDir: path.resolve(context.root, options.distDir),
        remote: remoteLookup(options, process.env),
        blobs: options.blobs === true,
      });
    } finally {
      hashes.close();
    }
    if (options.json) {
      console.log(JSON.stringify(rows, null, 2));
      return;
    }
    console.log(`Layers of image ${options.imageName} (base first); nothing was built or restored to list them.`);
    if (config.cacheSalt !== undefined) console.log(`Every layer's cache key includes image.json's cacheSalt '${config.cacheSalt}'.`);
    console.log('');
    console.log(formatStatusTable(rows));
  });
}
