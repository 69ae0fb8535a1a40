import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, statfsSync } from 'node:fs';
import * as path from 'node:path';
import { DIE_WITH_PARENT, SCRIPT_NAMESPACES, blockServiceStarts, dropForeignBuildMounts, runInChroot, scriptEnvironment } from './chroot';
import { writeFileAtomic } from '../util/atomic-file';
import { type BuildRecord, makeBuildRecord } from '../cache-identity/build-record';
import { chainDigestAndSha256, readDigest, writeDigest } from '../cache-identity/digest';
import { digestPathFor, manifestPathFor, snapshotPathFor } from '../image/dist-layout';
import { AttachedDisk, releaseLeftovers } from '../disk/disk-attach';
import type { Log } from '../util/log';
import { run, tail } from '../util/exec';
import { changedInodesSince } from '../disk/ext4-inodes';
import { type LayerManifest, diffSnapshots, summarizeManifest } from '../inspect/layer-manifest';
import { type RootSnapshot, snapshotRoot, updateSnapshot } from '../inspect/root-snapshot';
import { readSnapshotFile, writeSnapshotFile } from '../inspect/snapshot-file';
import type { ScriptHints, ScriptKind } from '../image/hints';
import { readPartitionTable } from '../disk/partition-table';
import { selectPartition, selectRootPartition } from '../disk/root-partition';
import { backingChain, createOverlay } from '../disk/qcow2';
import { FolderLock } from './dist-lock';
import { LeftoverReaper } from './leftover-reaper';
import { pausePhase, pausePoint } from '../util/pause-point';
import { formatBytes, formatDuration } from '../util/units';
import { WorkDir } from '../disk/work-dir';

/** Everything needed to build one layer; every path absolute. */
export interface LayerBuildPlan {
  imageName: string;
  layer: string;
  layerDir: string;
  script: string;
  kind: ScriptKind;
  hints: ScriptHints;
  parent: string;
  output: string;
  rootPartition?: number;
  nbdDevice?: string;
  /** Absolute workspace root, recorded in the manifest's build record. */
  workspaceRoot: string;
}

/** A layer script failed; the message names image, layer, script, exit code and the output's last lines. */
export class LayerScriptError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LayerScriptError';
  }
}

/** Path of the overlay while it is being written; renamed to the output only on success. */
export function partialPathFor(output: string): string {
  return path.join(path.dirname(output), `.${path.basename(output)}.partial`);
}

/**
 * Builds one layer: a new overlay on the parent, attached read-write, the
 * script run against it, everything detached, then the overlay and its
 * digest moved into place. On any failure, or when `signal` aborts, nothing
 * is left: no output, no partial file, no mount, loop device or daemon.
 */
export async function buildLayer(plan: LayerBuildPlan, log: Log, signal?: AbortSignal): Promise<{ digest: string; sha256: string }> {
  const started = Date.now();
  // An unknown VMLB_PAUSE_AT fails here, before anything is created.
  pausePhase();
  const imageDir = path.dirname(plan.output);
  let waited = false;
  const lock = await FolderLock.acquire(imageDir, {
    signal,
    onWait: () => {
      waited = true;
      log(`vmlb: waiting for another build writing to ${imageDir}${describeOwners(imageDir)} to finish...`);
    },
  });
  try {
    if (waited) {
      const current = await builtMeanwhile(plan);
      if (current) {
        log(`vmlb: layer ${plan.layer} was built by the other build under the same task hash (digest ${current.digest.slice(0, 12)}); not built again`);
        return current;
      }
    }
    return await buildLocked(plan, log, started, signal);
  } finally {
    lock.release();
  }
}

/** ` (pid N)`: who holds the image folder, as far as its work folders say. */
function describeOwners(imageDir: string): string {
  const owners = WorkDir.allUnder(imageDir)
    .map((workDir) => workDir.readState()?.owner)
    .filter((owner): owner is number => owner !== undefined && owner !== process.pid);
  return owners.length ? ` (pid ${[...new Set(owners)].join(', ')})` : '';
}

/**
 * After waiting for another build: the layer it left in place, when that
 * build ran under this task's Nx hash (same script, same parent) and its
 * digest still matches the file. Building it again would replace a file
 * the other build may already be building on.
 */
async function builtMeanwhile(plan: LayerBuildPlan): Promise<{ digest: string; sha256: string } | undefined> {
  const taskHash = process.env.NX_TASK_HASH;
  if (!taskHash || process.env.NX_SKIP_NX_CACHE === 'true' || plan.hints.nocache) return undefined;
  try {
    const manifest = JSON.parse(readFileSync(manifestPathFor(plan.output), 'utf8')) as { build?: { taskHash?: string } };
    if (manifest.build?.taskHash !== taskHash) return undefined;
    const recorded = await readDigest(digestPathFor(plan.output));
    const current = await chainDigestAndSha256(await readDigest(digestPathFor(plan.parent)), plan.output);
    return current.digest === recorded ? current : undefined;
  } catch {
    return undefined;
  }
}

async function buildLocked(plan: LayerBuildPlan, log: Log, started: number, signal?: AbortSignal): Promise<{ digest: string; sha256: string }> {
  const workDir = WorkDir.forLayer(path.dirname(plan.output), plan.layer);
  const released = await releaseLeftovers(workDir, log);
  if (released.length) log(`vmlb: cleaned up after an interrupted build of ${plan.layer}: ${released.join(', ')}`);
  const interrupted = () => new Error(`Build of layer ${plan.layer} of image ${plan.imageName} was interrupted.`);
  const stopIfInterrupted = () => {
    if (signal?.aborted) throw interrupted();
  };

  const parentDigestPath = digestPathFor(plan.parent);
  if (!existsSync(plan.parent) || !existsSync(parentDigestPath)) {
    throw new Error(
      `Layer ${plan.layer} of image ${plan.imageName} builds on ${plan.parent}${existsSync(plan.parent) ? ` (its digest ${parentDigestPath} is missing)` : ''}, which does not exist. ` +
        `Build the layers below it first: nx build image-${plan.imageName}`,
    );
  }
  // Fails early, naming the file, when a file of the chain is missing or corrupt.
  await backingChain(plan.parent);
  const parentDigest = await readDigest(parentDigestPath);

  const partial = partialPathFor(plan.output);
  rmSync(partial, { force: true });
  let manifest: TimedManifest | undefined;
  let rootSnapshot: RootSnapshot | undefined;
  // Started before anything is created: if this process is killed, it releases what the work folder records.
  const reaper = LeftoverReaper.start({
    workDir: workDir.dir,
    lockFolder: path.dirname(plan.output),
    partial,
    output: plan.output,
    digest: digestPathFor(plan.output),
    companions: [manifestPathFor(plan.output), snapshotPathFor(plan.output)],
  });
  let disk: AttachedDisk | undefined;
  let renamed = false;
  try {
    await createOverlay(plan.parent, partial, {
      size: plan.hints.diskSize,
      sizeFor: `layer ${plan.layer} (${path.relative(plan.workspaceRoot, plan.script)})`,
    });
    await pausePoint('overlay-created', signal, log);
    stopIfInterrupted();
    disk = await AttachedDisk.open({ overlay: partial, workDir, nbdDevice: plan.nbdDevice, log, signal });
    const attachedAt = Date.now();
    const result =
      plan.kind === 'modify-disk'
        ? await runModifyDisk(plan, disk, workDir, partial, signal)
        : await runBuildLayer(plan, disk, workDir, parentDigest, log, signal);
    manifest = result.manifest;
    rootSnapshot = 'snapshot' in result ? result.snapshot : undefined;
    const scriptTime = Date.now() - attachedAt;
    stopIfInterrupted();
    if (result.exitCode !== 0) {
      const output = [result.stdout, result.stderr].filter(Boolean).join('\n');
      throw new LayerScriptError(
        `Layer ${plan.layer} of image ${plan.imageName}: ${path.relative(process.cwd(), plan.script) || plan.script} exited with code ${result.exitCode}.` +
          (output ? `\nLast lines of its output:\n${tail(output, 20)}` : ''),
      );
    }
    await disk.close();
    disk = undefined;
    log(`vmlb: ${plan.kind} ran in ${formatDuration(scriptTime)}${manifest ? `; changes: ${summarizeManifest(manifest)}` : ''}`);
    await pausePoint('detached', signal, log);
    stopIfInterrupted();

    const { digest, sha256 } = await chainDigestAndSha256(parentDigest, partial);
    const digestPath = digestPathFor(plan.output);
    await pausePoint('before-rename', signal, log);
    stopIfInterrupted();
    // The layer it replaces stays whole until here, so a failed rebuild
    // loses nothing. Its digest goes first: without it, the files beside it
    // are the leftovers of an unfinished build (for the watcher, and for the
    // next build). An old manifest or listing must not describe the new overlay.
    rmSync(digestPath, { force: true });
    rmSync(manifestPathFor(plan.output), { force: true });
    rmSync(snapshotPathFor(plan.output), { force: true });
    renameSync(partial, plan.output);
    renamed = true;
    await pausePoint('renamed', signal, log);
    stopIfInterrupted();
    if (rootSnapshot) {
      const writeStarted = Date.now();
      await writeSnapshotFile(snapshotPathFor(plan.output), rootSnapshot, digest);
      if (manifest) manifest.snapshotMs += Date.now() - writeStarted;
    }
    await writeManifest(plan, manifest, await makeBuildRecord(plan.output, { workspaceRoot: plan.workspaceRoot, startedAt: started }));
    // Last: a digest file present always matches the qcow2 beside it.
    await writeDigest(digestPath, digest);
    await reaper.disarm();
    log(`vmlb: layer ${plan.layer} built in ${formatDuration(Date.now() - started)} (digest ${digest.slice(0, 12)})`);
    return { digest, sha256 };
  } catch (error) {
    if (disk) await disk.close().catch((closeError: Error) => log(`vmlb: ${closeError.message}`));
    rmSync(partial, { force: true });
    // A layer renamed into place but not finished (no digest yet) is not a layer: nothing of it is kept.
    if (renamed) for (const file of [plan.output, manifestPathFor(plan.output), snapshotPathFor(plan.output)]) rmSync(file, { force: true });
    // Released here unless closing failed: then the watcher tries again once this process is gone.
    if (!workDir.exists()) await reaper.disarm();
    // Whatever step noticed it, an interruption is reported as one.
    throw signal?.aborted ? interrupted() : error;
  }
}

/**
 * Makes the kernel write out what the script wrote and reports whether it
 * reached the overlay. Writes that fail underneath the image's filesystem
 * (the disk holding dist/ is full: qemu-storage-daemon hands ENOSPC back to
 * the loop device) never reach the script, which wrote to the page cache
 * and exits 0; the kernel records the error, and syncfs/fsync return it.
 * Without this check the layer would be a consistent qcow2 holding a
 * damaged filesystem, and Nx would cache it.
 */
async function flushOrFail(plan: LayerBuildPlan, partial: string, flush: () => Promise<string | undefined>): Promise<void> {
  const failure = await flush();
  if (failure === undefined) return;
  const folder = path.dirname(partial);
  const { bavail, bsize } = statfsSync(folder);
  throw new Error(
    `Layer ${plan.layer} of image ${plan.imageName}: writes to the new overlay failed (${failure}); ` +
      `${formatBytes(bavail * bsize)} is free on the filesystem holding ${folder}, which is probably full. ` +
      `Nothing of the layer was kept. Free some space and build again.`,
  );
}

/** syncfs on a mounted filesystem; the error text, or undefined when everything was written. */
async function syncFilesystem(mountPoint: string): Promise<string | undefined> {
  const result = await run('sync', ['--file-system', mountPoint], { reject: false });
  return result.exitCode === 0 ? undefined : result.stderr.trim() || `sync exited with ${result.exitCode}`;
}

async function runBuildLayer(plan: LayerBuildPlan, disk: AttachedDisk, workDir: WorkDir, parentDigest: string, log: Log, signal?: AbortSignal) {
  const table = await readPartitionTable(disk.rawDisk);
  const diskLabel = `the disk of image ${plan.imageName} at layer ${plan.layer}`;
  const root = selectRootPartition(table, plan.rootPartition, diskLabel);
  const partitionMounts = plan.hints.partitionMounts.map((hint) => {
    const selection = selectPartition(table, hint.partition, diskLabel);
    return { device: disk.rawDisk, offset: selection.start, size: selection.size, target: hint.target };
  });
  const rootDevice = await disk.mount(root, workDir.rootDir);
  await pausePoint('mounted', signal, log);
  if (signal?.aborted) return { exitCode: 130, stdout: '', stderr: '', manifest: undefined, snapshot: undefined };
  // Before vmlb's own policy-rc.d goes in, so that it is not taken for the script's.
  const snapshotStarted = Date.now();
  const stored = await readSnapshotFile(snapshotPathFor(plan.parent), parentDigest);
  const before = stored ?? (await snapshotRoot(workDir.rootDir));
  let snapshotMs = Date.now() - snapshotStarted;
  // Whole seconds, one back: the kernel stamps ctimes from a clock that can lag a tick.
  const scriptStartedSecond = Math.floor(Date.now() / 1000) - 1;
  const restoreServices = blockServiceStarts(workDir.rootDir);
  let result;
  try {
    result = await runInChroot({
      root: workDir.rootDir,
      workDir: workDir.dir,
      layerDir: plan.layerDir,
      scriptName: path.basename(plan.script),
      bindMounts: plan.hints.bindMounts,
      partitionMounts,
      env: scriptEnvironment(plan.imageName, plan.layer),
      signal,
    });
  } finally {
    restoreServices();
  }
  if (result.exitCode !== 0 || signal?.aborted) return { ...result, manifest: undefined, snapshot: undefined };
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

/** A build-layer's changes, what making them cost, and how the two listings of its root were made. */
type TimedManifest = LayerManifest & { snapshotMs: number; snapshotMethod: { before: 'stored' | 'walk'; after: 'inode-tables' | 'walk' } };

/**
 * `<layer>.manifest.json`: what a build-layer script changed in the root
 * filesystem (files, and packages when the image has dpkg). A modify-disk
 * script works on the disk below any filesystem, so its manifest only says so.
 */
async function writeManifest(plan: LayerBuildPlan, manifest: TimedManifest | undefined, build: BuildRecord): Promise<void> {
  const content = manifest ? { kind: plan.kind, ...manifest, build } : { kind: plan.kind, version: 1, files: null, build };
  await writeFileAtomic(manifestPathFor(plan.output), `${JSON.stringify(content, null, 2)}\n`);
}

async function runModifyDisk(plan: LayerBuildPlan, disk: AttachedDisk, workDir: WorkDir, target: string, signal?: AbortSignal) {
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
  const result = await run(DIE_WITH_PARENT[0], [...DIE_WITH_PARENT.slice(1), 'unshare', ...SCRIPT_NAMESPACES, '/bin/sh', '-c', startScript, plan.script, plan.parent, target, device], {
    cwd: plan.layerDir,
    env: { ...scriptEnvironment(plan.imageName, plan.layer), HOME: process.env.HOME ?? '/root' },
    cleanEnv: true,
    stream: true,
    reject: false,
    signal,
    killSignal: 'SIGKILL',
  });
  try {
    if (result.exitCode === 0 && !signal?.aborted) {
      await flushOrFail(plan, disk.overlay, async () => {
        try {
          fsyncSync(errorWatch);
          return undefined;
        } catch (error) {
          return `${device}: ${(error as Error).message}`;
        }
      });
    }
  } finally {
    closeSync(errorWatch);
  }
  return { ...result, manifest: undefined };
}
