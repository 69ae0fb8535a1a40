import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { run } from '../util/exec';
import { type LoopDevice, attachLoop, detachLoop, isMounted, listLoopDevices, loopsStackedOn, mountsUnder, unmount } from './mounts';
import { type DiskDevices, waitForPartitionDevices } from './disk-devices';
import type { PartitionSelection } from './root-partition';
import { checkpoint, pausePoint } from '../util/pause-point';
import { commandLineOf, isAlive, stopProcess } from '../util/processes';
import { type AttachState, WorkDir } from './work-dir';
import type { Log } from '../util/log';

export interface AttachOptions {
  /** The qcow2 to open read-write (its backing chain is opened read-only by qemu). */
  overlay: string;
  workDir: WorkDir;
  /** Use qemu-nbd on this device instead of a FUSE export. */
  nbdDevice?: string;
  /**
   * Open the whole chain read-only (qemu, loop devices and mounts), for
   * looking at a built layer: nothing can write to it, and a sweep of a
   * killed attachment never removes the file.
   */
  readOnly?: boolean;
  log: Log;
  /** The build's interruption: only for its pause points (VMLB_PAUSE_AT); releasing never stops half-way. */
  signal?: AbortSignal;
}

/** qemu's option syntax separates with commas; a comma inside a value is doubled. */
function qemuValue(value: string): string {
  return value.replace(/,/g, ',,');
}

/**
 * A qcow2 opened read-write as a raw block view, without nbd:
 * qemu-storage-daemon exports it through FUSE onto a regular file, and loop
 * devices give the kernel block devices on that file (the whole disk, or one
 * partition at its offset, since `losetup -P` creates no partition nodes on
 * the hosts vmlb targets). With `nbdDevice`, qemu-nbd serves it instead.
 *
 * Every resource is written to the work folder's state file before it is
 * taken, so `close()` — or, after a SIGKILL, `releaseLeftovers()` in the
 * next build — releases exactly what this attachment took.
 */
export class AttachedDisk {
  private state: AttachState;

  private constructor(
    private readonly options: AttachOptions,
    /** Path of the raw whole-disk view (the FUSE export file or the nbd device). */
    readonly rawDisk: string,
    state: AttachState,
  ) {
    this.state = state;
  }

  static async open(options: AttachOptions): Promise<AttachedDisk> {
    const { workDir } = options;
    mkdirSync(workDir.dir, { recursive: true });
    // The image root is mounted in it: only root may reach its files (a setuid program or device node of the image is no use to anyone else).
    chmodSync(workDir.dir, 0o700);
    const state: AttachState = { owner: process.pid, loopDevices: [], mounts: [], ...(options.readOnly ? {} : { partialFile: options.overlay }) };
    workDir.writeState(state);
    if (options.nbdDevice) {
      const disk = new AttachedDisk(options, options.nbdDevice, state);
      try {
        await disk.connectNbd(options.nbdDevice);
      } catch (error) {
        await disk.close();
        throw error;
      }
      return disk;
    }
    const disk = new AttachedDisk(options, workDir.exportFile, state);
    try {
      await disk.startFuseExport();
      await checkpoint('daemon-started', options.signal, options.log);
    } catch (error) {
      await disk.close();
      throw error;
    }
    return disk;
  }

  private record(change: (state: AttachState) => void): void {
    change(this.state);
    this.options.workDir.writeState(this.state);
  }

  private async startFuseExport(): Promise<void> {
    const { workDir, overlay, readOnly } = this.options;
    // The FUSE export mounts over an existing regular file.
    writeFileSync(workDir.exportFile, '');
    const readOnlyOption = readOnly ? ',read-only=on' : '';
    // --daemonize returns once the export is mounted, so no polling is needed;
    // the daemon's PID comes from its pid file.
    await run('qemu-storage-daemon', [
      '--blockdev',
      `driver=file,node-name=file0,filename=${qemuValue(overlay)}${readOnlyOption}`,
      '--blockdev',
      `driver=qcow2,node-name=disk0,file=file0${readOnlyOption}`,
      '--export',
      `type=fuse,id=export0,node-name=disk0,mountpoint=${qemuValue(workDir.exportFile)},writable=${readOnly ? 'off' : 'on'}`,
      '--pidfile',
      workDir.daemonPidFile,
      '--daemonize',
    ]);
    const daemonPid = Number(readFileSync(workDir.daemonPidFile, 'utf8').trim());
    this.record((state) => (state.daemonPid = daemonPid));
    if (!isMounted(workDir.exportFile)) {
      throw new Error(`qemu-storage-daemon (pid ${daemonPid}) started but ${workDir.exportFile} is not a FUSE mount.`);
    }
  }

  private async connectNbd(device: string): Promise<void> {
    if (!existsSync(device)) {
      throw new Error(
        `${device} does not exist: the nbd kernel module is not loaded. Load it with 'modprobe nbd max_part=16', ` +
          `or leave out --nbd (and VMLB_NBD) to attach disks through a qemu-storage-daemon FUSE export.`,
      );
    }
    this.record((state) => (state.nbdDevice = device));
    await run('qemu-nbd', [
      '--connect',
      device,
      '--format',
      'qcow2',
      ...(this.options.readOnly ? ['--read-only'] : ['--cache', 'writeback']),
      this.options.overlay,
    ]);
  }

  /** The qcow2 this attachment writes. */
  get overlay(): string {
    return this.options.overlay;
  }

  /** A loop device on the whole disk (for modify-disk scripts, which may repartition it). */
  async wholeDiskDevice(): Promise<string> {
    if (this.options.nbdDevice) return this.options.nbdDevice;
    return this.loop();
  }

  /** A loop device on one byte range of the disk (a partition). */
  async loop(range?: { offset: number; size: number }): Promise<string> {
    const device = await attachLoop(this.rawDisk, range, { readOnly: this.options.readOnly });
    this.record((state) => state.loopDevices.push(device));
    return device;
  }

  /** The whole disk and its partitions as block devices (`# disk-devices`), on a loop device that scans partitions. */
  async diskDevices(partitionNumbers: readonly number[]): Promise<DiskDevices> {
    if (this.options.nbdDevice) throw new Error('# disk-devices needs the FUSE attach: leave out --nbd (and VMLB_NBD) for this layer.');
    const device = await attachLoop(this.rawDisk, undefined, { readOnly: this.options.readOnly, partitions: true });
    this.record((state) => state.loopDevices.push(device));
    return waitForPartitionDevices(device, partitionNumbers);
  }

  /** Mounts a partition (or the whole disk) at a mount point (read-write unless asked); returns the device it mounted (`device`, when given, instead of a new loop device). */
  async mount(selection: PartitionSelection, mountPoint: string, options: { readOnly?: boolean; device?: string } = {}): Promise<string> {
    mkdirSync(mountPoint, { recursive: true });
    const device = options.device ?? (await this.loop({ offset: selection.start, size: selection.size }));
    await checkpoint('loop-attached', this.options.signal, this.options.log);
    this.record((state) => state.mounts.push(mountPoint));
    // noatime: reading a file or listing a folder would otherwise rewrite
    // inode tables and the journal, so even an empty layer stored megabytes
    // of access times, different on every build. nosuid,nodev: the image's
    // setuid programs and device nodes are of no use on the host (nor, for
    // device nodes, in the build's sandbox, which sees this mount).
    await run('mount', ['-o', `${options.readOnly || this.options.readOnly ? 'ro' : 'noatime'},nosuid,nodev`, device, mountPoint]);
    return device;
  }

  /**
   * Releases everything, newest first, and never stops half-way: a step that
   * fails is reported and the next one still runs. The daemon is stopped
   * with SIGTERM and waited for, because it flushes the qcow2 as it exits.
   */
  async close(): Promise<void> {
    const { workDir, log, signal } = this.options;
    const { problems } = await releaseState(this.state, workDir, log, undefined, () => pausePoint('teardown', signal, log));
    // What could not be released stays recorded, for the leftover watcher and the next build.
    if (problems.length) throw new Error(`Releasing the disk left problems:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    workDir.remove();
  }
}

/** The daemon serving this work folder's export, if it still runs: only that one is ours to stop. */
function runningDaemon(state: AttachState | undefined, workDir: WorkDir): number | undefined {
  // A build killed between starting the daemon and recording its PID left
  // only the daemon's own pid file.
  let pid = state?.daemonPid;
  if (pid === undefined) {
    try {
      pid = Number(readFileSync(workDir.daemonPidFile, 'utf8').trim());
    } catch {
      return undefined;
    }
  }
  return isAlive(pid) && (commandLineOf(pid)?.join(' ') ?? '').includes(workDir.exportFile) ? pid : undefined;
}

/**
 * Releases what `state` records (plus loop devices a script stacked on its
 * own), newest first, never stopping half-way: a step that fails is
 * reported and the next one still runs. The daemon is stopped with SIGTERM
 * and waited for, because it flushes the qcow2 as it exits.
 */
async function releaseState(
  state: AttachState,
  workDir: WorkDir,
  log: Log,
  loopListing?: LoopDevice[],
  /** Runs between unmounting and detaching (a pause point). */
  afterUnmount?: () => Promise<void>,
): Promise<{ problems: string[]; stackedLoops: string[] }> {
  const problems: string[] = [];
  const attempt = async (what: string, step: () => Promise<unknown>) => {
    try {
      await step();
    } catch (error) {
      problems.push(`${what}: ${(error as Error).message}`);
    }
  };
  for (const mountPoint of [...mountsUnder(workDir.rootDir), ...[...state.mounts].reverse()]) {
    await attempt(`unmount ${mountPoint}`, () => unmount(mountPoint));
  }
  await afterUnmount?.();
  // Loop devices a modify-disk script attached on ours and left behind keep
  // ours busy (detaching it would only mark it for auto-clear): them first.
  const stackedLoops = state.loopDevices.length ? await loopsStackedOn(state.loopDevices, loopListing) : [];
  for (const device of [...stackedLoops, ...[...state.loopDevices].reverse()]) {
    await attempt(`detach ${device}`, () => detachLoop(device));
  }
  if (state.nbdDevice) {
    await attempt(`disconnect ${state.nbdDevice}`, () => run('qemu-nbd', ['--disconnect', state.nbdDevice!]));
  }
  const daemonPid = runningDaemon(state, workDir);
  if (daemonPid !== undefined) {
    await attempt(`stop qemu-storage-daemon (pid ${daemonPid})`, async () => {
      const outcome = await stopProcess(daemonPid);
      if (outcome === 'killed') log(`vmlb: qemu-storage-daemon (pid ${daemonPid}) did not stop on SIGTERM and was killed.`);
    });
  }
  // A stopped daemon leaves its FUSE mount behind as a dead endpoint.
  await attempt(`unmount ${workDir.exportFile}`, () => unmount(workDir.exportFile));
  return { problems, stackedLoops };
}

/**
 * Finds what an earlier, killed build of the same layer left attached under
 * its work folder (mounts, loop devices on its export file, its daemon),
 * releases it, and says what it released. Throws when that build is still
 * running.
 */
export async function releaseLeftovers(workDir: WorkDir, log: Log): Promise<string[]> {
  if (!workDir.exists()) return [];
  const state = workDir.readState();
  if (state && state.owner !== process.pid && isAlive(state.owner)) {
    throw new Error(
      `Another vmlb build (pid ${state.owner}) is building this layer right now (work folder ${workDir.dir}). ` + `Wait for it to finish, or stop it.`,
    );
  }
  const mounts = [...new Set([...mountsUnder(workDir.rootDir), ...(state?.mounts ?? []).filter(isMounted)])];
  const loopListing = await listLoopDevices();
  const loops = loopListing.filter((loop) => loop.backFile === workDir.exportFile).map((loop) => loop.name);
  const daemonPid = runningDaemon(state, workDir);
  const exportMounted = isMounted(workDir.exportFile);
  const { problems, stackedLoops } = await releaseState(
    { owner: state?.owner ?? 0, loopDevices: loops, mounts, nbdDevice: state?.nbdDevice, daemonPid },
    workDir,
    log,
    loopListing,
  );
  const released = [
    ...mounts.map((mountPoint) => `unmounted ${mountPoint}`),
    ...[...stackedLoops, ...loops].map((device) => `detached ${device}`),
    ...(state?.nbdDevice ? [`disconnected ${state.nbdDevice}`] : []),
    ...(daemonPid !== undefined ? [`stopped qemu-storage-daemon (pid ${daemonPid})`] : []),
    ...(exportMounted ? [`unmounted ${workDir.exportFile}`] : []),
  ];
  if (state?.partialFile && existsSync(state.partialFile)) {
    rmSync(state.partialFile, { force: true });
    released.push(`removed ${state.partialFile}`);
  }
  if (problems.length) {
    throw new Error(`Could not release what an interrupted build left under ${workDir.dir}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
  workDir.remove();
  return released;
}

/**
 * Releases what killed builds of any layer of an image left under its
 * output folder, saying what for each. A layer's own build does this for its
 * work folder first thing, but when the layer is then restored from the Nx
 * cache its build never runs, and the daemon, mounts and loop devices would
 * stay; the image's build target (never cached) calls this. Work folders of
 * builds still running, and folders a build is only creating (no state
 * yet), are left alone.
 */
export async function releaseAllLeftovers(imageDistDir: string, log: Log): Promise<void> {
  for (const workDir of WorkDir.allUnder(imageDistDir)) {
    const state = workDir.readState();
    if (!state || (state.owner !== process.pid && isAlive(state.owner))) continue;
    const released = await releaseLeftovers(workDir, log);
    if (released.length) log(`vmlb: cleaned up after an interrupted build of ${path.basename(workDir.dir)}: ${released.join(', ')}`);
  }
}
