import { chmodSync, mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { runInChroot, scriptEnvironment } from './chroot';
import { blockServiceStarts } from './image-root-edits';
import { LeftoverReaper } from './leftover-reaper';
import type { ProjectOutputMount } from './project-outputs';
import { INTERACTIVE_SHELL } from './sandbox-terminal';
import { AttachedDisk } from '../disk/disk-attach';
import { readPartitionTable } from '../disk/partition-table';
import { imageInfo } from '../disk/qcow2-info';
import { selectPartition, selectRootPartition } from '../disk/root-partition';
import { WorkDir } from '../disk/work-dir';
import type { BindMountHint, PartitionMountHint } from '../image/hints';
import { run } from '../util/exec';
import type { Log } from '../util/log';

/**
 * A shell, or one command, in the sandbox a build gives a layer's script,
 * on a throwaway overlay over a built layer: whatever it writes lands in
 * the overlay and goes with it, and the layer file is only ever opened
 * read-only.
 */
export interface LayerShellPlan {
  imageName: string;
  /** `10_hello`, or `base`: for messages and the script's environment. */
  pointName: string;
  /** Absolute path of the layer's qcow2 (its chain below it is read through it). */
  qcow2: string;
  /** Absolute output folder of the image: the throwaway overlay's work folder goes under its `.vmlb`. */
  imageDistDir: string;
  /** The layer folder, read-only at /mnt as in the build. */
  layerDir: string;
  /** Absolute workspace root: bind sources may be anywhere inside it. */
  workspaceRoot: string;
  bindMounts: BindMountHint[];
  partitionMounts: PartitionMountHint[];
  projectOutputs: ProjectOutputMount[];
  rootPartition?: number;
  /** A command line for the image's /bin/sh (run in /mnt); none for an interactive shell. */
  command?: string;
  /** Give it this process's terminal (through one of its own). */
  terminal: boolean;
}

/**
 * Runs the plan's shell or command and returns its exit code. The
 * overlay's work folder records what is attached, and a watcher releases
 * it if this process is killed; everything is released when it returns or
 * throws, interrupted or not.
 */
export async function runLayerShell(plan: LayerShellPlan, log: Log, signal?: AbortSignal): Promise<number> {
  const workDir = WorkDir.forLayer(plan.imageDistDir, `shell-${process.pid}`);
  const overlay = path.join(workDir.dir, 'throwaway.qcow2');
  mkdirSync(workDir.dir, { recursive: true });
  chmodSync(workDir.dir, 0o700);
  const reaper = LeftoverReaper.start({
    workDir: workDir.dir,
    lockFolder: plan.imageDistDir,
    partial: overlay,
    output: overlay,
    digest: path.join(workDir.dir, 'never-written.digest'),
    companions: [],
  });
  let disk: AttachedDisk | undefined;
  try {
    const { format } = await imageInfo(plan.qcow2);
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', format, '-b', plan.qcow2, overlay]);
    disk = await AttachedDisk.open({ overlay, workDir, log });
    const partitionMounts = await mountRoot(plan, disk, workDir);
    signal?.throwIfAborted();
    const restoreServices = blockServiceStarts(workDir.rootDir);
    try {
      const result = await runInChroot({
        root: workDir.rootDir,
        workDir: workDir.dir,
        layerDir: plan.layerDir,
        workspaceRoot: plan.workspaceRoot,
        scriptName: 'build-layer',
        bindMounts: plan.bindMounts,
        projectOutputs: plan.projectOutputs,
        partitionMounts,
        env: scriptEnvironment(plan.imageName, plan.pointName),
        command: plan.command ?? INTERACTIVE_SHELL,
        terminal: plan.terminal,
        signal,
      });
      signal?.throwIfAborted();
      return result.exitCode;
    } finally {
      restoreServices();
    }
  } finally {
    // close() removes the work folder with the overlay in it; when it cannot, the watcher tries again once this process is gone.
    const problem = disk
      ? await disk.close().then(
          () => undefined,
          (error: Error) => error,
        )
      : workDir.remove();
    if (problem) throw problem;
    await reaper.disarm();
  }
}

/** The root filesystem mounted in the work folder, and the `# chroot-mount` partitions located for the sandbox to mount. */
async function mountRoot(plan: LayerShellPlan, disk: AttachedDisk, workDir: WorkDir) {
  const table = await readPartitionTable(disk.rawDisk);
  const label = `the disk of image ${plan.imageName} at ${plan.pointName}`;
  const root = selectRootPartition(table, plan.rootPartition, label);
  try {
    await disk.mount(root, workDir.rootDir);
  } catch (error) {
    throw new Error(
      `Image ${plan.imageName} at ${plan.pointName} has no root filesystem to open a shell in (a blank base, or a layer below the one that makes it); ` +
        `choose a later --layer.\n${(error as Error).message}`,
    );
  }
  return plan.partitionMounts.map((hint) => {
    const selection = selectPartition(table, hint.partition, label);
    return { device: disk.rawDisk, offset: selection.start, size: selection.size, target: hint.target };
  });
}
