import { existsSync } from 'node:fs';
import * as path from 'node:path';
import type { ExecutorContext } from '@nx/devkit';
import { materialiseChain } from '../../lib/blob/chain';
import { openBlobStores } from '../../lib/blob/config';
import { EXPORT_EXTENSIONS, EXPORT_FORMATS, type ExportOptions, exportDisk } from '../../lib/export/disk-export';
import { reportFailure } from '../../lib/util/executor-errors';
import { withInterruptSignal } from '../../lib/util/interrupt';
import { checkPrerequisites } from '../../lib/build/prerequisites';
import { imageInfo } from '../../lib/disk/qcow2-info';
import { formatBytes, formatDuration } from '../../lib/util/units';
import type { FlattenExecutorSchema } from './schema';
import { checkTargetDefaults } from '../../lib/cache-identity/target-defaults-guard';
import { chainTop } from '../../lib/image/image-chain';
import { checkQcow2Compat } from '../../lib/disk/qcow2';
import { type SbomPlan, sbomPlan, writeImageSbom } from '../../lib/inspect/image-sbom';

export interface FlattenPlan extends Omit<ExportOptions, 'signal'> {
  imageName: string;
  /** Absolute path of the chain's top qcow2. */
  chain: string;
  /** Absolute path of the file to write. */
  output: string;
  blobs: boolean;
  /** With --sbom: where the SPDX document goes, beside the export. */
  sbom?: SbomPlan;
}

export function normalizeOptions(options: FlattenExecutorSchema, workspaceRoot: string): FlattenPlan {
  const format = options.format ?? 'qcow2';
  if (!EXPORT_FORMATS.includes(format)) {
    throw new Error(`--format '${format}' is not one vmlb exports; use one of ${EXPORT_FORMATS.join(', ')}.`);
  }
  if (options.compress && format !== 'qcow2') {
    throw new Error(`--compress applies to qcow2 only (got --format ${format}); vmdk compresses with --vmdkSubformat streamOptimized, and an ova always does.`);
  }
  if (options.vmdkSubformat && format !== 'vmdk') {
    throw new Error(`--vmdkSubformat applies to --format vmdk only (got --format ${format}).`);
  }
  const cpus = options.cpus ?? 2;
  const memoryMiB = options.memory ?? 1024;
  if (!Number.isInteger(cpus) || cpus < 1) throw new Error(`--cpus must be a whole number of 1 or more, got ${JSON.stringify(options.cpus)}.`);
  if (!Number.isInteger(memoryMiB) || memoryMiB < 16)
    throw new Error(`--memory is in MiB and must be a whole number of 16 or more, got ${JSON.stringify(options.memory)}.`);
  // Up to a layer, the export goes to a folder named as --upTo was given: the name the plugin's outputs give Nx to cache.
  const folder = options.upTo === undefined ? [] : [String(options.upTo)];
  return {
    imageName: options.imageName,
    chain: path.resolve(workspaceRoot, chainTop(options, workspaceRoot)),
    output: path.resolve(workspaceRoot, options.outputDir, format, ...folder, `${options.imageName}.${EXPORT_EXTENSIONS[format]}`),
    format,
    compress: options.compress === true,
    vmdkSubformat: options.vmdkSubformat ?? 'monolithicSparse',
    machine: { cpus, memoryMiB },
    progress: true,
    sha256: options.sha256 !== false,
    blobs: options.blobs === true,
    qcow2Compat: checkQcow2Compat(options.qcow2Compat, '--qcow2Compat'),
    ...(options.sbom ? { sbom: sbomBeside(options, workspaceRoot, format) } : {}),
  };
}

/** The SBOM's place beside the export (`export/<format>/<image>.spdx.json`), checked before any export work. */
function sbomBeside(options: FlattenExecutorSchema, workspaceRoot: string, format: string): SbomPlan {
  if (!options.imageRoot || !options.distDir) throw new Error(`--sbom needs --imageRoot and --distDir to find the image's layers (the plugin sets both).`);
  const output = path.posix.join(options.outputDir, format, `${options.imageName}.spdx.json`);
  return sbomPlan(
    { imageName: options.imageName, imageRoot: options.imageRoot, distDir: options.distDir, output, distro: options.distro },
    workspaceRoot,
    process.env,
  );
}

/**
 * An export's cache key is the digests of its chain, which Nx reads from
 * the output files of the tasks the export depends on. Run without them
 * (`--exclude-task-dependencies`), the key would name no chain at all, and
 * a later run would be handed this export back whatever the layers hold:
 * such a run stops here, so nothing is stored under that key.
 */
export function checkChainInKey(context: Pick<ExecutorContext, 'taskGraph' | 'projectName' | 'targetName'>): void {
  const graph = context.taskGraph;
  const task = Object.values(graph?.tasks ?? {}).find(({ target }) => target.project === context.projectName && target.target === context.targetName);
  if (!graph || !task || (graph.dependencies[task.id] ?? []).length > 0) return;
  throw new Error(
    `nx run ${task.id} ran without the tasks it depends on (--exclude-task-dependencies?). An export is cached under the digests of its chain, ` +
      `which Nx takes from those tasks; without them the key would name no chain. Run it without --exclude-task-dependencies.`,
  );
}

export default async function flattenExecutor(options: FlattenExecutorSchema, context: ExecutorContext): Promise<{ success: boolean }> {
  return reportFailure(() =>
    withInterruptSignal(async (signal) => {
      checkTargetDefaults(context);
      checkChainInKey(context);
      const plan = normalizeOptions(options, context.root);
      checkPrerequisites(plan.format === 'ova' ? ['qemu-img', 'tar'] : ['qemu-img'], { fuse: false, disks: false });
      const log = (message: string) => console.log(message);
      if (plan.blobs) await materialiseChain(plan.chain, await openBlobStores(context.root), { log, signal });
      if (!existsSync(plan.chain)) {
        throw new Error(
          `Image ${plan.imageName} is not built here (${path.relative(context.root, plan.chain)} is missing). Build it first: nx build image-${plan.imageName}.`,
        );
      }
      const started = Date.now();
      const relative = path.relative(context.root, plan.output);
      console.log(`vmlb: exporting image ${plan.imageName} as ${plan.format}${plan.compress ? ' (zstd-compressed)' : ''} to ${relative}`);
      const { sha256 } = await exportDisk(plan.chain, plan.output, { ...plan, signal });
      const info = plan.format === 'ova' ? undefined : await imageInfo(plan.output);
      console.log(
        `vmlb: image ${plan.imageName} exported in ${formatDuration(Date.now() - started)}: ${relative}` +
          (info ? ` (${formatBytes(info.actualSize)} on disk, ${formatBytes(info.virtualSize)} disk)` : '') +
          (sha256 ? `, sha256 ${sha256.slice(0, 16)}... in ${path.basename(plan.output)}.sha256` : ''),
      );
      if (plan.sbom) await writeImageSbom(plan.sbom, context.root, context.projectsConfigurations?.projects, log);
    }),
  );
}
