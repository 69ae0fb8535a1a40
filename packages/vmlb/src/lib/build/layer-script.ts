import { closeSync, fsyncSync, openSync, statfsSync } from 'node:fs';
import * as path from 'node:path';
import { DIE_WITH_PARENT, SCRIPT_NAMESPACES, dropForeignBuildMounts, runInChroot, scriptEnvironment } from './chroot';
import { checkSecrets } from './build-secrets';
import { CacheMountStore, type HeldCacheMounts, cacheMountTargetProblem } from './cache-mounts';
import { blockServiceStarts } from './image-root-edits';
import type { LayerBuildPlan } from './layer-plan';
import type { AttachedDisk } from '../disk/disk-attach';
import { changedInodesSince } from '../disk/ext4-inodes';
import { readPartitionTable } from '../disk/partition-table';
import { selectPartition, selectRootPartition } from '../disk/root-partition';
import type { WorkDir } from '../disk/work-dir';
import { type LayerManifest, diffSnapshots } from '../inspect/layer-manifest';
import { type RootSnapshot, snapshotRoot, updateSnapshot } from '../inspect/root-snapshot';
import { run } from '../util/exec';
import type { Log } from '../util/log';
import { PAUSE_ENV, PAUSE_ON_FAILURE, pausePoint } from '../util/pause-point';
import type { FailureHold } from './sandbox-terminal';
import { formatBytes } from '../util/units';

/** Running a layer's script on its attached overlay: the sandboxed build-layer, or modify-disk on the host. */

/** A build-layer's changes, what making them cost, and how the two listings of its root were made. */
export type TimedManifest = LayerManifest & { snapshotMs: number; snapshotMethod: { before: 'stored' | 'walk'; after: 'inode-tables' | 'walk' } };

/**
 * Makes the kernel write out what the script wrote and reports whether it
 * reached the overlay. Writes that fail underneath the image's filesystem
 * (the disk holding dist/ is full: qemu-storage-daemon hands ENOSPC back to
 * the loop device) never reach the script, which wrote to the page cache
 * and exits 0; the kernel records the error, and syncfs/fsync return it.
 * Without this check the layer would be a consistent qcow2 holding a
 * damaged filesystem, and Nx would cache it.
 */
async function flushOrFail(plan: LayerBuildPlan, partial: string, flush: () => Promise<string | undefined>, scriptExit = 0): Promise<void> {
  const failure = await flush();
  if (failure === undefined) return;
  const folder = path.dirname(partial);
  const { bavail, bsize } = statfsSync(folder);
  // A script whose writes fail mid-run (the kernel sees the errors and remounts read-only) fails too; the cause is the disk.
  const script = scriptExit === 0 ? '' : ` The script exited with code ${scriptExit}, most likely from that.`;
  throw new Error(
    `Layer ${plan.layer} of image ${plan.imageName}: writes to the new overlay failed (${failure}); ` +
      `${formatBytes(bavail * bsize)} is free on the filesystem holding ${folder}, which is probably full.${script} ` +
      `Nothing of the layer was kept. Free some space and build again.`,
  );
}

/** syncfs on a mounted filesystem; the error text, or undefined when everything was written. */
async function syncFilesystem(mountPoint: string): Promise<string | undefined> {
  const result = await run('sync', ['--file-system', mountPoint], { reject: false });
  return result.exitCode === 0 ? undefined : result.stderr.trim() || `sync exited with ${result.exitCode}`;
}

/**
 * Runs a build-layer script in the image's sandbox on the attached disk, and
 * lists what it changed (its manifest and the root's new listing).
 * `storedListing` is the parent's listing, read while the disk was attached.
 */
export async function runBuildLayerScript(
  plan: LayerBuildPlan,
  disk: AttachedDisk,
  workDir: WorkDir,
  storedListing: Promise<RootSnapshot | undefined>,
  log: Log,
  signal?: AbortSignal,
) {
  const table = await readPartitionTable(disk.rawDisk);
  const diskLabel = `the disk of image ${plan.imageName} at layer ${plan.layer}`;
  const root = selectRootPartition(table, plan.rootPartition, diskLabel);
  const partitionMounts = plan.hints.partitionMounts.map((hint) => {
    const selection = selectPartition(table, hint.partition, diskLabel);
    return { device: disk.rawDisk, offset: selection.start, size: selection.size, target: hint.target };
  });
  // `# disk-devices`: the root is mounted from its partition's device, so that a bootloader probing / finds the disk it is on.
  const devices = plan.hints.diskDevices ? await disk.diskDevices(table.partitions.map((partition) => partition.number)) : undefined;
  const rootNode = root.number !== undefined ? devices?.partitions.get(root.number) : undefined;
  const rootDevice = await disk.mount(root, workDir.rootDir, { device: rootNode });
  await pausePoint('mounted', signal, log);
  if (signal?.aborted) return { exitCode: 130, stdout: '', stderr: '', manifest: undefined, snapshot: undefined };
  // Before vmlb's own policy-rc.d goes in, so that it is not taken for the script's.
  const snapshotStarted = Date.now();
  const stored = await storedListing;
  const before = stored ?? (await snapshotRoot(workDir.rootDir));
  let snapshotMs = Date.now() - snapshotStarted;
  // Whole seconds, one back: the kernel stamps ctimes from a clock that can lag a tick.
  const scriptStartedSecond = Math.floor(Date.now() / 1000) - 1;
  const restoreServices = blockServiceStarts(workDir.rootDir);
  let result;
  let caches: HeldCacheMounts | undefined;
  try {
    caches = await holdCacheMounts(plan, workDir.rootDir, log, signal);
    result = await runInChroot({
      root: workDir.rootDir,
      workDir: workDir.dir,
      layerDir: plan.layerDir,
      workspaceRoot: plan.workspaceRoot,
      scriptName: path.basename(plan.script),
      bindMounts: plan.hints.bindMounts,
      projectOutputs: plan.projectOutputs,
      diskDevices: devices,
      partitionMounts,
      cacheMounts: caches?.mounts,
      secrets: secretValues(plan, log),
      env: scriptEnvironment(plan.imageName, plan.layer, process.env, plan.scriptEnv),
      signal,
      onFailure: plan.keepFailed && failureHold(plan, workDir.rootDir),
    });
  } finally {
    caches?.release();
    restoreServices();
  }
  if (signal?.aborted) return { ...result, manifest: undefined, snapshot: undefined };
  if (result.exitCode !== 0) {
    // A full disk under the overlay is the cause to report, not what it made the script do.
    await flushOrFail(plan, disk.overlay, () => syncFilesystem(workDir.rootDir), result.exitCode);
    return { ...result, manifest: undefined, snapshot: undefined };
  }
  await pausePoint('script-finished', signal, log);
  if (signal?.aborted) return { ...result, manifest: undefined, snapshot: undefined };
  // Also writes back inodes whose timestamps were updated in memory only, before their tables are read.
  await flushOrFail(plan, disk.overlay, () => syncFilesystem(workDir.rootDir));
  const afterStarted = Date.now();
  const changed = await changedInodesSince(rootDevice, scriptStartedSecond);
  const incremental = changed ? await updateSnapshot(before, workDir.rootDir, changed.inodes) : undefined;
  const after = incremental ?? (await snapshotRoot(workDir.rootDir));
  snapshotMs += Date.now() - afterStarted;
  if (incremental && process.env.VMLB_MANIFEST_VERIFY === '1') await verifyAgainstWalk(plan, before, incremental, workDir.rootDir);
  const manifest = diffSnapshots(before, after);
  const method = { before: stored ? 'stored' : 'walk', after: incremental ? 'inode-tables' : 'walk' } as const;
  return { ...result, manifest: { ...manifest, snapshotMs, snapshotMethod: method }, snapshot: after };
}

/** `# cache-mount`: each cache locked for the script's run (another build's script using it is waited for), and its host folder. */
async function holdCacheMounts(plan: LayerBuildPlan, root: string, log: Log, signal?: AbortSignal): Promise<HeldCacheMounts | undefined> {
  const hints = plan.hints.cacheMounts ?? [];
  if (!hints.length) return undefined;
  const where = `Layer ${plan.layer} of image ${plan.imageName}: ${path.relative(plan.workspaceRoot, plan.script)}`;
  if (!plan.cacheMountsRoot) throw new Error(`${where}: has cache mounts, but the build was given no folder for them.`);
  const problem = hints.map((hint) => cacheMountTargetProblem(root, hint)).find(Boolean);
  if (problem) throw new Error(`${where}: ${problem}`);
  const store = new CacheMountStore(plan.cacheMountsRoot);
  const held = await store.acquire(hints, { image: plan.imageName, layer: plan.layer }, { log, signal });
  for (const hint of hints) log(`vmlb: cache mount ${hint.id} (${store.dir(hint.id)}) at ${hint.target}`);
  return held;
}

/** `# secret`: the values to write into the sandbox; checked here too, for callers that skip the executor's check. */
function secretValues(plan: LayerBuildPlan, log: Log): Array<{ target: string; value: Buffer }> | undefined {
  if (!plan.hints.secrets?.length) return undefined;
  const script = path.relative(plan.workspaceRoot, plan.script);
  if (!plan.secrets)
    throw new Error(`Layer ${plan.layer} of image ${plan.imageName}: ${script}: has # secret hints, but the build was given no values for them.`);
  checkSecrets(plan.secrets, { imageName: plan.imageName, layer: plan.layer, script });
  for (const secret of plan.secrets) log(`vmlb: secret ${secret.name} at ${secret.target} (from ${secret.source}), for the script's run only`);
  return plan.secrets.map((secret) => ({ target: secret.target, value: secret.value as Buffer }));
}

/** What a failed script's sandbox says and does under VMLB_PAUSE_AT=failed (lib/build/sandbox-terminal.ts, FailureHold). */
function failureHold(plan: LayerBuildPlan, root: string): FailureHold {
  const failed = `vmlb: layer ${plan.layer} of image ${plan.imageName}: its script failed; kept as it left it (${PAUSE_ENV}=${PAUSE_ON_FAILURE}).`;
  if (plan.keepFailed === 'shell') {
    return {
      shell: true,
      banner: `${failed} A shell in its sandbox follows: the same mounts, /tmp and /run as the script saw them. Exit it (exit or Ctrl-D) and the build fails and releases the layer; nothing of it is kept.`,
    };
  }
  return {
    shell: false,
    banner:
      `${failed} Its root is mounted at ${root}; a shell in its mounts (/tmp, /run, /dev as the script left them): ` +
      `nsenter --target {pid} --mount chroot ${root} /bin/sh. Interrupt the build (Ctrl-C, or kill -INT ${process.pid}) to release it; the build then fails.`,
  };
}

/**
 * VMLB_MANIFEST_VERIFY=1: also walk the whole root and fail the layer when
 * the incremental result differs. The integration tests build with it, so
 * every layer they build checks the fast path against the slow one.
 */
async function verifyAgainstWalk(plan: LayerBuildPlan, before: RootSnapshot, incremental: RootSnapshot, root: string): Promise<void> {
  const walked = diffSnapshots(before, await snapshotRoot(root));
  const fast = diffSnapshots(before, incremental);
  if (JSON.stringify(fast.files) !== JSON.stringify(walked.files)) {
    throw new Error(
      `Layer ${plan.layer} of image ${plan.imageName}: the manifest from changed inodes differs from a full walk ` +
        `(VMLB_MANIFEST_VERIFY=1).\nFrom inodes: ${JSON.stringify(fast.files)}\nFrom a walk: ${JSON.stringify(walked.files)}`,
    );
  }
}

/** Runs a modify-disk script on the host against the attached disk, checking that its writes reached the overlay. */
export async function runModifyDiskScript(plan: LayerBuildPlan, disk: AttachedDisk, workDir: WorkDir, target: string, signal?: AbortSignal) {
  const device = await disk.wholeDiskDevice();
  // Its own mount and PID namespaces: whatever the script mounts or leaves
  // running is dropped with it, even when it is killed, and even when this
  // process is killed (the kernel kills unshare with it, and unshare's
  // --kill-child the script's namespace). unshare --fork ignores SIGTERM,
  // so an interrupted build stops it with SIGKILL rather than 5 s later.
  // Opened before the script runs: the kernel reports a write error on the
  // device to every descriptor opened before it happened, even when the
  // script's own loop device already consumed the report on detaching.
  const errorWatch = openSync(device, 'r');
  const startScript = `${dropForeignBuildMounts(workDir.dir)}\nexec "$0" "$@"`;
  const result = await run(
    DIE_WITH_PARENT[0],
    [...DIE_WITH_PARENT.slice(1), 'unshare', ...SCRIPT_NAMESPACES, '/bin/sh', '-c', startScript, plan.script, plan.parent, target, device],
    {
      cwd: plan.layerDir,
      env: { ...scriptEnvironment(plan.imageName, plan.layer, process.env, plan.scriptEnv), HOME: process.env.HOME ?? '/root' },
      cleanEnv: true,
      stream: true,
      reject: false,
      signal,
      killSignal: 'SIGKILL',
    },
  );
  try {
    // Also after a failed script: a full disk under the overlay is the cause to report.
    if (!signal?.aborted) {
      const flush = async () => {
        try {
          fsyncSync(errorWatch);
          return undefined;
        } catch (error) {
          return `${device}: ${(error as Error).message}`;
        }
      };
      await flushOrFail(plan, disk.overlay, flush, result.exitCode);
    }
  } finally {
    closeSync(errorWatch);
  }
  return { ...result, manifest: undefined };
}
