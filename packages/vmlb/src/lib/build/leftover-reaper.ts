import { type ChildProcess, spawn } from 'node:child_process';
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
 * process group does not reach it, and holds the read end of a pipe whose
 * only write end is the build's. Once the build has released everything
 * itself (success, failure or Ctrl-C) it stops the watcher; if the pipe
 * closes while the watcher runs, the build died, and the watcher
 * takes the image folder's lock (a build started meanwhile goes first) and
 * releases the work folder.
 */
export class LeftoverReaper {
  private constructor(private child: ChildProcess | undefined) {}

  static start(build: WatchedBuild): LeftoverReaper {
    const child = spawn(process.execPath, [__filename, JSON.stringify({ ...build, owner: process.pid })], {
      detached: true,
      // Its messages go where the build's do; stdout stays free for nothing.
      stdio: ['pipe', 'ignore', 'inherit'],
    });
    // Neither the watcher nor its pipe keeps this process alive.
    child.unref();
    (child.stdin as unknown as { unref?: () => void } | null)?.unref?.();
    child.stdin?.on('error', () => undefined);
    child.on('error', () => undefined);
    return new LeftoverReaper(child);
  }

  /**
   * Everything is released: the watcher has nothing to do. It is stopped
   * (a watcher told it is done would have to finish starting node first to
   * read that) and waited for, so that once the build is gone, so is its
   * watcher.
   */
  async disarm(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.ref();
    child.kill('SIGKILL');
    await exited;
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
  // Nothing is ever written: the loop ends when the build's end of the pipe closes.
  for await (const _chunk of process.stdin) void _chunk;
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
