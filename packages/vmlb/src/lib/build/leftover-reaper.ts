import { spawn } from 'node:child_process';
import { Socket } from 'node:net';
import { existsSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { releaseLeftovers } from '../disk/disk-attach';
import { FolderLock } from './dist-lock';
import { waitForExit } from '../util/processes';
import { WorkDir } from '../disk/work-dir';

/**
 * A watcher that outlives a layer build killed with SIGKILL (by a user, a
 * CI job being cancelled, the OOM killer) and releases what it had attached:
 * mounts, loop devices, the storage daemon and the partial overlay, as
 * recorded in its work folder. Without it they would stay until the next
 * build of the same layer (which releases them too, as a second line).
 *
 * The watcher runs in a session of its own, so a signal to the build's
 * process group does not reach it, and is no child of the build (`setsid
 * --fork` leaves it to init): a kill of the build's process tree, such as
 * Nx's when its terminal closes (leaves first, then SIGKILL for whatever
 * is left), passes it by. It holds one end of a socket pair whose other
 * end only the build holds. Once the build has released everything itself
 * (success, failure or Ctrl-C) it stops the watcher; if the socket closes
 * while the watcher runs, the build died, and the watcher takes the image
 * folder's lock (a build started meanwhile goes first) and releases the
 * work folder.
 */
export class LeftoverReaper {
  private constructor(
    private channel: Socket | undefined,
    /** The watcher's PID, once it runs and has said it on the socket. */
    readonly pid: Promise<number>,
  ) {}

  /**
   * Starts the watcher, without waiting for it: if this process dies even
   * before the watcher runs, the watcher finds the socket closed at once.
   */
  static start(build: WatchedBuild): LeftoverReaper {
    const child = spawn('setsid', ['--fork', process.execPath, __filename, JSON.stringify({ ...build, owner: process.pid })], {
      // Its messages go where the build's do; the socket is its descriptor 3.
      stdio: ['ignore', 'ignore', 'inherit', 'pipe'],
    });
    child.on('error', () => undefined);
    const channel = child.stdio[3] as Socket;
    channel.on('error', () => undefined);
    const pid = new Promise<number>((resolve, reject) => {
      channel.once('data', (chunk: Buffer) => resolve(Number(chunk.toString().trim())));
      channel.once('close', () => reject(new Error('the leftover watcher did not start')));
    });
    pid.catch(() => undefined);
    // Neither setsid nor the socket keeps this process alive.
    child.unref();
    channel.unref();
    return new LeftoverReaper(channel, pid);
  }

  /**
   * Everything is released: the watcher has nothing to do. It is stopped
   * (a watcher told it is done might still be reading that when the build
   * has gone) and waited for, so that once the build is gone, so is its
   * watcher.
   */
  async disarm(): Promise<void> {
    const channel = this.channel;
    this.channel = undefined;
    if (!channel) return;
    channel.ref();
    const pid = await this.pid.catch(() => undefined);
    if (pid !== undefined) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
      await waitForExit(pid, 10_000);
    }
    channel.destroy();
  }
}

/** What a watcher looks after: all absolute paths. */
export interface WatchedBuild {
  /** The build's work folder (its state file records what is attached). */
  workDir: string;
  /** The folder whose lock builds writing there hold (the image's output folder). */
  lockFolder: string;
  /** The overlay while it is written. */
  partial: string;
  /** Where the finished overlay goes; its digest, written last, marks it complete. */
  output: string;
  digest: string;
  /** Written beside the output before its digest: without the digest they describe nothing. */
  companions: string[];
}

async function watch(build: WatchedBuild & { owner: number }): Promise<void> {
  const channel = new Socket({ fd: 3, readable: true, writable: true });
  try {
    channel.write(`${process.pid}\n`);
    // Nothing else is ever written: the loop ends when the build's end of the socket closes.
    for await (const _chunk of channel) void _chunk;
  } catch {
    // The build's end is gone (EPIPE, a reset): the build died, maybe before this watcher ran.
  }
  // The pipe closes as the build dies; its PID can linger a moment as a zombie.
  await waitForExit(build.owner, 10_000);
  const log = (line: string) => process.stderr.write(`${line}\n`);
  // Taken after any build that started meanwhile: under the lock, no build is half-way.
  const lock = await FolderLock.acquire(build.lockFolder);
  try {
    const released = await releaseLeftovers(new WorkDir(build.workDir), log);
    for (const file of [build.partial, ...(existsSync(build.digest) ? [] : [build.output, ...build.companions])]) {
      if (existsSync(file)) {
        rmSync(file, { force: true });
        released.push(`removed ${file}`);
      }
    }
    if (released.length)
      log(`vmlb: the build of ${path.basename(build.workDir)} (pid ${build.owner}) was killed; released what it left: ${released.join(', ')}`);
  } finally {
    lock.release();
  }
}

if (require.main === module) {
  const build = JSON.parse(process.argv[2]) as WatchedBuild & { owner: number };
  // A stray SIGINT from the terminal must not stop the watcher half-way.
  process.on('SIGINT', () => undefined);
  process.stderr.on('error', () => undefined);
  watch(build).catch((error: Error) => {
    process.stderr.write(`vmlb: could not release what the killed build of ${path.basename(build.workDir)} left: ${error.message}\n`);
    process.exitCode = 1;
  });
}
