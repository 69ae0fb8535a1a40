import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { workFolderFor, workFoldersIn } from '../image/dist-layout';

/**
 * Everything a layer build attaches to the host is recorded in its work
 * folder (`<dist>/<image>/.vmlb/<layer>/state.json`) before it is attached,
 * so that whatever a killed build left behind can be found and released by
 * the next build: mounts and loop devices are identified by paths under
 * this folder, the storage daemon by its PID.
 */
export interface AttachState {
  /** PID of the vmlb process that owns the folder. */
  owner: number;
  /** PID of qemu-storage-daemon, once started. */
  daemonPid?: number;
  /** nbd device in use, when attached with qemu-nbd. */
  nbdDevice?: string;
  /** Loop devices attached (whole disk or partition). */
  loopDevices: string[];
  /** Mount points, in the order they were mounted. */
  mounts: string[];
  /** The partial overlay being written. */
  partialFile?: string;
}

export class WorkDir {
  readonly statePath: string;
  /** Raw view of the disk exported by qemu-storage-daemon (a FUSE mount on a regular file). */
  readonly exportFile: string;
  /** Mount point of the image's root filesystem. */
  readonly rootDir: string;
  /** Where qemu-storage-daemon writes its PID as it starts. */
  readonly daemonPidFile: string;

  constructor(readonly dir: string) {
    this.statePath = path.join(dir, 'state.json');
    this.exportFile = path.join(dir, 'disk.raw');
    this.rootDir = path.join(dir, 'root');
    this.daemonPidFile = path.join(dir, 'qemu-storage-daemon.pid');
  }

  /** The work folder of one layer build. */
  static forLayer(imageDistDir: string, layer: string): WorkDir {
    return new WorkDir(workFolderFor(imageDistDir, layer));
  }

  /** Every work folder under an image's output folder (for a sweep of leftovers). */
  static allUnder(imageDistDir: string): WorkDir[] {
    const parent = workFoldersIn(imageDistDir);
    if (!existsSync(parent)) return [];
    return readdirSync(parent).map((name) => new WorkDir(path.join(parent, name)));
  }

  exists(): boolean {
    return existsSync(this.dir);
  }

  readState(): AttachState | undefined {
    try {
      return JSON.parse(readFileSync(this.statePath, 'utf8')) as AttachState;
    } catch {
      return undefined;
    }
  }

  /** Records state atomically: a reader sees the old or the new file, never half of one. */
  writeState(state: AttachState): void {
    mkdirSync(this.dir, { recursive: true });
    const temporary = `${this.statePath}.${process.pid}.tmp`;
    writeFileSync(temporary, JSON.stringify(state, null, 2));
    renameSync(temporary, this.statePath);
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
    // Drop the shared .vmlb folder too once no build is using it.
    try {
      rmdirSync(path.dirname(this.dir));
    } catch {
      // another layer's build still has its work folder there
    }
  }
}
