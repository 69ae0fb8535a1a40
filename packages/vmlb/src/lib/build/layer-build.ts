import { existsSync, renameSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { FolderLock } from './dist-lock';
import type { LayerBuildPlan } from './layer-plan';
import { type TimedManifest, runBuildLayerScript, runModifyDiskScript } from './layer-script';
import { LeftoverReaper } from './leftover-reaper';
import { makeBuildRecord } from '../cache-identity/build-record';
import { chainDigestAndSha256, readDigest, writeDigest } from '../cache-identity/digest';
import { AttachedDisk, releaseLeftovers } from '../disk/disk-attach';
import { createOverlay } from '../disk/qcow2';
import { backingChain } from '../disk/qcow2-info';
import { WorkDir } from '../disk/work-dir';
import { digestPathFor, manifestPathFor, partialPathFor, snapshotPathFor } from '../image/dist-layout';
import { manifestWithoutFiles, readManifest, summarizeManifest, writeManifest } from '../inspect/layer-manifest';
import { encodeSnapshotBody, readSnapshotFile, writeSnapshotFile } from '../inspect/snapshot-file';
import { tail } from '../util/exec';
import type { Log } from '../util/log';
import { PAUSE_ENV, PAUSE_ON_FAILURE, checkpoint, pausePhase, untilAborted } from '../util/pause-point';
import { formatDuration } from '../util/units';

export type { LayerBuildPlan } from './layer-plan';

/** A layer script failed; the message names image, layer, script, exit code and the output's last lines. */
export class LayerScriptError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LayerScriptError';
  }
}

/** The layer built on: its digest, and its format and size as its chain check read them. */
interface ParentLayer {
  digest: string;
  format: string;
  virtualSize: number;
}

/** What a layer's digest and bytes are once it is built. */
type BuiltLayer = { digest: string; sha256: string };

/** What a failed or interrupted build must take back: the disk still attached, whether the overlay was renamed into place. */
interface Unfinished {
  disk?: AttachedDisk;
  renamed: boolean;
}

/**
 * Builds one layer, in the steps docs/layer-lifecycle.md names: the image
 * folder's lock, leftovers of a killed build, the parent check, the script
 * on a new attached overlay, publishing, and on any failure or interrupt
 * discarding everything unfinished (no output, partial file, mount, loop
 * device or daemon is left).
 */
export async function buildLayer(plan: LayerBuildPlan, log: Log, signal?: AbortSignal): Promise<BuiltLayer> {
  const started = Date.now();
  // An unknown VMLB_PAUSE_AT fails here, before anything is created.
  pausePhase();
  return withImageFolderLock(plan, log, signal, async () => {
    const workDir = await releaseEarlierLeftovers(plan, log);
    const parentLayer = await checkParent(plan);
    const partial = partialPathFor(plan.output);
    rmSync(partial, { force: true });
    // Started before anything is created: if this process is killed, it releases what the work folder records.
    const reaper = LeftoverReaper.start({
      workDir: workDir.dir,
      lockFolder: path.dirname(plan.output),
      partial,
      output: plan.output,
      digest: digestPathFor(plan.output),
      companions: [manifestPathFor(plan.output), snapshotPathFor(plan.output)],
    });
    const unfinished: Unfinished = { renamed: false };
    try {
      const ran = await runOnNewOverlay(plan, partial, workDir, parentLayer, unfinished, log, signal);
      const built = await publish(plan, partial, parentLayer.digest, ran, started, unfinished, log, signal);
      await reaper.disarm();
      return built;
    } catch (error) {
      await discardUnfinished(plan, partial, unfinished, log);
      // Released here unless closing failed: then the watcher tries again once this process is gone.
      if (!workDir.exists()) await reaper.disarm();
      // Whatever step noticed it, an interruption is reported as one.
      throw signal?.aborted ? new Error(`Build of layer ${plan.layer} of image ${plan.imageName} was interrupted.`) : error;
    }
  });
}

/**
 * Step 0: the image folder's lock. After waiting for another build, the
 * layer it left is kept when that build ran under this task's hash.
 */
async function withImageFolderLock(plan: LayerBuildPlan, log: Log, signal: AbortSignal | undefined, build: () => Promise<BuiltLayer>): Promise<BuiltLayer> {
  const imageDir = path.dirname(plan.output);
  let waited = false;
  const lock = await FolderLock.acquire(imageDir, {
    signal,
    onWait: () => {
      waited = true;
      log(`vmlb: waiting for another build writing to ${imageDir}${describeOwners(imageDir)} to finish...`);
    },
  });
  // A derived image's first layer reads another image's layer: that folder's builds must not replace it meanwhile.
  let parentLock: FolderLock | undefined;
  try {
    const parentDir = path.dirname(plan.parent);
    if (parentDir !== imageDir) {
      parentLock = await FolderLock.acquire(parentDir, {
        shared: true,
        signal,
        onWait: () =>
          log(`vmlb: waiting for another build writing to ${parentDir}${describeOwners(parentDir)}, whose layer ${plan.layer} is built on, to finish...`),
      });
    }
    const current = waited ? await builtMeanwhile(plan) : undefined;
    if (current) {
      log(`vmlb: layer ${plan.layer} was built by the other build under the same task hash (digest ${current.digest.slice(0, 12)}); not built again`);
      return current;
    }
    return await build();
  } finally {
    parentLock?.release();
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
async function builtMeanwhile(plan: LayerBuildPlan): Promise<BuiltLayer | undefined> {
  const taskHash = process.env.NX_TASK_HASH;
  if (!taskHash || process.env.NX_SKIP_NX_CACHE === 'true' || plan.hints.nocache) return undefined;
  if (readManifest(manifestPathFor(plan.output))?.build?.taskHash !== taskHash) return undefined;
  try {
    const recorded = await readDigest(digestPathFor(plan.output));
    const current = await chainDigestAndSha256(await readDigest(digestPathFor(plan.parent)), plan.output);
    return current.digest === recorded ? current : undefined;
  } catch {
    return undefined;
  }
}

/** Step 1: what a killed build of this layer left attached is released first (its work folder records it). */
async function releaseEarlierLeftovers(plan: LayerBuildPlan, log: Log): Promise<WorkDir> {
  const workDir = WorkDir.forLayer(path.dirname(plan.output), plan.layer);
  const released = await releaseLeftovers(workDir, log);
  if (released.length) log(`vmlb: cleaned up after an interrupted build of ${plan.layer}: ${released.join(', ')}`);
  return workDir;
}

/** Step 2: the parent and its digest exist, and its chain opens; returns the parent's digest, format and size. */
async function checkParent(plan: LayerBuildPlan): Promise<ParentLayer> {
  const parentDigestPath = digestPathFor(plan.parent);
  if (!existsSync(plan.parent) || !existsSync(parentDigestPath)) {
    throw new Error(
      `Layer ${plan.layer} of image ${plan.imageName} builds on ${plan.parent}${existsSync(plan.parent) ? ` (its digest ${parentDigestPath} is missing)` : ''}, which does not exist. ` +
        `Build the layers below it first: nx build image-${plan.imageName}`,
    );
  }
  // Fails early, naming the file, when a file of the chain is missing or corrupt.
  const [parent] = await backingChain(plan.parent);
  return { digest: await readDigest(parentDigestPath), format: parent.format, virtualSize: parent.virtualSize };
}

/** Step 3: a new overlay on the parent, attached read-write, the script run against it, detached again. */
async function runOnNewOverlay(
  plan: LayerBuildPlan,
  partial: string,
  workDir: WorkDir,
  parent: ParentLayer,
  unfinished: Unfinished,
  log: Log,
  signal?: AbortSignal,
): Promise<{ manifest?: TimedManifest; listingBody?: Buffer }> {
  // Read while the overlay is created and attached: the script's sandbox needs it once the root is mounted.
  const storedListing = plan.kind === 'build-layer' ? readSnapshotFile(snapshotPathFor(plan.parent), parent.digest) : Promise.resolve(undefined);
  await createOverlay(plan.parent, partial, {
    size: plan.hints.diskSize,
    sizeFor: `layer ${plan.layer} (${path.relative(plan.workspaceRoot, plan.script)})`,
    compat: plan.qcow2Compat,
    parentInfo: parent,
  });
  await checkpoint('overlay-created', signal, log);
  const disk = await AttachedDisk.open({ overlay: partial, workDir, nbdDevice: plan.nbdDevice, log, signal });
  unfinished.disk = disk;
  const attachedAt = Date.now();
  const result =
    plan.kind === 'modify-disk'
      ? await runModifyDiskScript(plan, disk, workDir, partial, signal)
      : await runBuildLayerScript(plan, disk, workDir, storedListing, log, signal);
  const scriptTime = Date.now() - attachedAt;
  signal?.throwIfAborted();
  if (result.exitCode !== 0) {
    if (plan.keepFailed && plan.kind === 'modify-disk' && signal) await holdFailedDisk(plan, disk, log, signal);
    const output = [result.stdout, result.stderr].filter(Boolean).join('\n');
    throw new LayerScriptError(
      `Layer ${plan.layer} of image ${plan.imageName}: ${path.relative(process.cwd(), plan.script) || plan.script} exited with code ${result.exitCode}.` +
        (output ? `\nLast lines of its output:\n${tail(output, 20)}` : ''),
    );
  }
  // The new listing is encoded while the disk detaches; publish puts the layer's digest in front.
  const closing = disk.close();
  const snapshot = 'snapshot' in result ? result.snapshot : undefined;
  const [, listingBody] = await Promise.all([closing, snapshot && encodeSnapshotBody(snapshot)]);
  unfinished.disk = undefined;
  log(`vmlb: ${plan.kind} ran in ${formatDuration(scriptTime)}${result.manifest ? `; changes: ${summarizeManifest(result.manifest)}` : ''}`);
  await checkpoint('detached', signal, log);
  return { manifest: result.manifest, listingBody };
}

/**
 * VMLB_PAUSE_AT=failed for a modify-disk script: it ran on the host, so
 * there is no sandbox to open a shell in; the new overlay stays attached
 * as the script left it until the build is interrupted.
 */
async function holdFailedDisk(plan: LayerBuildPlan, disk: AttachedDisk, log: Log, signal: AbortSignal): Promise<void> {
  log(
    `vmlb: layer ${plan.layer} of image ${plan.imageName}: its script failed; kept as it left it (${PAUSE_ENV}=${PAUSE_ON_FAILURE}): ` +
      `the new overlay ${disk.overlay} is attached, its whole disk readable at ${disk.rawDisk}. ` +
      `Interrupt the build (Ctrl-C, or kill -INT ${process.pid}) to release it; the build then fails.`,
  );
  await untilAborted(signal);
}

/**
 * Step 4: the overlay renamed into place, then its listing, its manifest
 * and, last, its digest: a digest file present always matches the qcow2
 * beside it. The layer it replaces stays whole until the rename, so a
 * failed rebuild loses nothing.
 */
async function publish(
  plan: LayerBuildPlan,
  partial: string,
  parentDigest: string,
  ran: { manifest?: TimedManifest; listingBody?: Buffer },
  started: number,
  unfinished: Unfinished,
  log: Log,
  signal?: AbortSignal,
): Promise<BuiltLayer> {
  const { digest, sha256 } = await chainDigestAndSha256(parentDigest, partial);
  const digestPath = digestPathFor(plan.output);
  await checkpoint('before-rename', signal, log);
  // The old digest goes first: without it, the files beside it are the
  // leftovers of an unfinished build (for the watcher, and for the next
  // build). An old manifest or listing must not describe the new overlay.
  rmSync(digestPath, { force: true });
  rmSync(manifestPathFor(plan.output), { force: true });
  rmSync(snapshotPathFor(plan.output), { force: true });
  renameSync(partial, plan.output);
  unfinished.renamed = true;
  await checkpoint('renamed', signal, log);
  const { manifest, listingBody } = ran;
  if (listingBody) {
    const writeStarted = Date.now();
    await writeSnapshotFile(snapshotPathFor(plan.output), listingBody, digest);
    if (manifest) manifest.snapshotMs += Date.now() - writeStarted;
  }
  const build = await makeBuildRecord(plan.output, { workspaceRoot: plan.workspaceRoot, startedAt: started });
  // A modify-disk script works on the disk below any filesystem, so its manifest only says so.
  await writeManifest(manifestPathFor(plan.output), manifest ? { kind: plan.kind, ...manifest, build } : manifestWithoutFiles(plan.kind, build));
  await writeDigest(digestPath, digest);
  log(`vmlb: layer ${plan.layer} built in ${formatDuration(Date.now() - started)} (digest ${digest.slice(0, 12)})`);
  return { digest, sha256 };
}

/** Step 5, on failure: the disk detached, the partial file gone, and a layer renamed in but not finished (no digest yet) removed. */
async function discardUnfinished(plan: LayerBuildPlan, partial: string, unfinished: Unfinished, log: Log): Promise<void> {
  if (unfinished.disk) await unfinished.disk.close().catch((closeError: Error) => log(`vmlb: ${closeError.message}`));
  rmSync(partial, { force: true });
  if (unfinished.renamed) for (const file of [plan.output, manifestPathFor(plan.output), snapshotPathFor(plan.output)]) rmSync(file, { force: true });
}
