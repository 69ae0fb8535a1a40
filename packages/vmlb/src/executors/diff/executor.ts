import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { ExecutorContext } from '@nx/devkit';
import { materialiseChain } from '../../lib/blob/chain';
import { openBlobStores } from '../../lib/blob/config';
import { AttachedDisk } from '../../lib/disk/disk-attach';
import type { Log } from '../../lib/util/log';
import { ImageLayout } from '../../lib/image/dist-layout';
import { chainBase } from '../../lib/image/image-chain';
import { reportFailure } from '../../lib/util/executor-errors';
import { withInterruptSignal } from '../../lib/util/interrupt';
import { type RootDiff, diffRoots, formatPackageChanges, formatRootDiff } from '../../lib/inspect/layer-diff';
import { discoverImage } from '../../lib/image/layer-discovery';
import { snapshotRoot } from '../../lib/inspect/root-snapshot';
import { readPartitionTable } from '../../lib/disk/partition-table';
import { type PartitionSelection, selectRootPartition } from '../../lib/disk/root-partition';
import { checkPrerequisites } from '../../lib/build/prerequisites';
import { formatBytes } from '../../lib/util/units';
import { WorkDir } from '../../lib/disk/work-dir';
import type { DiffExecutorSchema } from './schema';

interface Side {
  /** Layer folder name, or `base`. */
  name: string;
  /** Absolute path of its qcow2. */
  qcow2: string;
}

export interface DiffPlan {
  imageName: string;
  imageDistDir: string;
  rootPartition?: number;
  from: Side;
  to: Side;
  json: boolean;
  shell: boolean;
  blobs: boolean;
}

export function normalizeOptions(options: DiffExecutorSchema, workspaceRoot: string): DiffPlan {
  const image = discoverImage(workspaceRoot, options.imageRoot);
  const layout = new ImageLayout(image.name, options.distDir);
  const names = ['base', ...image.layers.map((layer) => layer.folder)];
  const side = (name: string, option: string): Side => {
    if (!names.includes(name)) {
      throw new Error(`--${option} '${name}' is not a layer of image ${image.name}; its layers are: ${names.join(', ')}.`);
    }
    // A derived image's base is the other image's layer it is built on.
    return { name, qcow2: path.resolve(workspaceRoot, name === 'base' ? chainBase(image.config, layout, options.distDir) : layout.layer(name)) };
  };
  const toName = options.to ?? names[names.length - 1];
  const to = side(toName, 'to');
  let fromName = options.from;
  if (fromName === undefined) {
    const below = names.indexOf(toName) - 1;
    if (below < 0) throw new Error(`--to base has no layer below it to compare with; give --from as well.`);
    fromName = names[below];
  }
  const from = side(fromName, 'from');
  if (from.name === to.name) throw new Error(`--from and --to are both ${from.name}; give two different layers of image ${image.name}.`);
  return {
    imageName: image.name,
    imageDistDir: path.resolve(workspaceRoot, layout.dir),
    rootPartition: image.config.rootPartition,
    from,
    to,
    json: options.json === true,
    shell: options.shell === true,
    blobs: options.blobs === true,
  };
}

/** One side of the comparison: the layer's chain attached read-only and its root filesystem mounted read-only. */
async function mountReadOnly(plan: DiffPlan, side: Side, mountPoint: string, label: string, log: Log): Promise<AttachedDisk> {
  const workDir = WorkDir.forLayer(plan.imageDistDir, `diff-${process.pid}-${label}`);
  const disk = await AttachedDisk.open({ overlay: side.qcow2, workDir, readOnly: true, log });
  try {
    const table = await readPartitionTable(disk.rawDisk);
    const root = selectRootPartition(table, plan.rootPartition, `the disk of image ${plan.imageName} at ${side.name}`);
    try {
      await disk.mount(root, mountPoint, { readOnly: true });
    } catch (error) {
      throw new Error(
        `Image ${plan.imageName} at ${side.name} has no filesystem to compare at ${describeSelection(root)} ` +
          `(a base disk or a layer below the one that makes the filesystem has none; choose a later --from).\n${(error as Error).message}`,
      );
    }
    return disk;
  } catch (error) {
    await disk.close().catch((closeError: Error) => log(`vmlb: ${closeError.message}`));
    throw error;
  }
}

function describeSelection(selection: PartitionSelection): string {
  return selection.number === undefined ? 'the whole disk' : `partition ${selection.number} (offset ${selection.start})`;
}

function printDiff(plan: DiffPlan, diff: RootDiff): void {
  const { added, removed, changed } = diff.files;
  console.log(`vmlb: image ${plan.imageName}, ${plan.from.name} (a) -> ${plan.to.name} (b), both read-only`);
  console.log(`\nFiles: ${added.length} added, ${removed.length} removed, ${changed.length} changed`);
  for (const line of formatRootDiff(diff, formatBytes)) console.log(line);
  if (!diff.packages) {
    console.log('\nPackages: no package database (dpkg) on either side');
    return;
  }
  const lines = formatPackageChanges(diff.packages);
  const { installed, removed: gone, upgraded } = diff.packages;
  console.log(`\nPackages (${diff.packages.manager}): ${installed.length} installed, ${gone.length} removed, ${upgraded.length} changed version`);
  for (const line of lines) console.log(line);
}

/** Runs the user's shell in `folder` with the terminal, until it exits. */
function runShell(folder: string, plan: DiffPlan): Promise<number> {
  const shell = process.env.SHELL || '/bin/bash';
  console.log(`vmlb: ${shell} in ${folder}: a/ is ${plan.from.name}, b/ is ${plan.to.name}, both read-only. Exit the shell to unmount them.`);
  return new Promise((resolve, reject) => {
    const child = spawn(shell, [], {
      cwd: folder,
      stdio: 'inherit',
      env: { ...process.env, VMLB_DIFF_A: plan.from.name, VMLB_DIFF_B: plan.to.name },
    });
    child.on('error', (error) => reject(new Error(`Cannot start the shell ${shell}: ${error.message}`)));
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

export default async function diffExecutor(options: DiffExecutorSchema, context: ExecutorContext): Promise<{ success: boolean }> {
  return reportFailure(() =>
    withInterruptSignal(async (signal) => {
      const plan = normalizeOptions(options, context.root);
      const log = (message: string) => (plan.json ? console.error(message) : console.log(message));
      if (plan.blobs) {
        const stores = await openBlobStores(context.root);
        for (const side of [plan.from, plan.to]) await materialiseChain(side.qcow2, stores, { log, signal });
      }
      for (const side of [plan.from, plan.to]) {
        if (!existsSync(side.qcow2)) {
          throw new Error(
            `Layer ${side.name} of image ${plan.imageName} is not built here (${path.relative(context.root, side.qcow2)} is missing). ` +
              `Build it first: nx build image-${plan.imageName}.`,
          );
        }
      }
      checkPrerequisites(['qemu-storage-daemon', 'losetup', 'mount', 'umount'], { fuse: true });

      const folder = mkdtempSync(path.join(tmpdir(), 'vmlb-diff-'));
      const mountA = path.join(folder, 'a');
      const mountB = path.join(folder, 'b');
      const disks: AttachedDisk[] = [];
      try {
        mkdirSync(mountA);
        mkdirSync(mountB);
        disks.push(await mountReadOnly(plan, plan.from, mountA, 'a', log));
        signal.throwIfAborted();
        disks.push(await mountReadOnly(plan, plan.to, mountB, 'b', log));
        signal.throwIfAborted();
        if (plan.shell) {
          const exitCode = await runShell(folder, plan);
          if (exitCode !== 0) log(`vmlb: the shell exited with ${exitCode}`);
          return;
        }
        const [a, b] = [await snapshotRoot(mountA), await snapshotRoot(mountB)];
        const diff = await diffRoots({ root: mountA, snapshot: a }, { root: mountB, snapshot: b });
        if (plan.json) console.log(JSON.stringify({ image: plan.imageName, from: plan.from.name, to: plan.to.name, ...diff }, null, 2));
        else printDiff(plan, diff);
      } finally {
        const problems: string[] = [];
        for (const disk of disks.reverse()) await disk.close().catch((error: Error) => problems.push(error.message));
        // Only empty folders are removed: never anything under a mount that failed to go.
        for (const dir of [mountA, mountB, folder]) {
          try {
            rmdirSync(dir);
          } catch (error) {
            if ((error as NodeJS.ErrnoException).code !== 'ENOENT') problems.push(`cannot remove ${dir}: ${(error as Error).message}`);
          }
        }
        if (problems.length) throw new Error(`Releasing the attached layers left problems:\n${problems.join('\n')}`);
      }
    }),
  );
}
