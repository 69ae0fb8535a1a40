import { spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync } from 'node:fs';

/**
 * An exclusive lock on an image's output folder, held while a layer is
 * built into it, so that two builds in one checkout (two `nx` processes, or
 * an editor's build next to a terminal's) never write the same overlay or
 * build on a layer the other is replacing. The second one waits, saying
 * for whom.
 *
 * It is the kernel's flock(2) on the folder itself, taken by util-linux's
 * `flock` on a descriptor this process lends it: the lock belongs to the
 * open file description, which stays ours once `flock` exits. The kernel
 * drops it when this process ends, however it ends (SIGKILL included), so a
 * lock is never stale. Node opens files close-on-exec, so the daemons a
 * build starts do not inherit the descriptor and cannot keep the lock.
 */
export class FolderLock {
  private constructor(private fd: number | undefined) {}

  /**
   * Takes the lock on `folder` (created if missing). When another process
   * holds it, calls `onWait` once and waits; aborting `signal` stops waiting
   * and throws its reason. `shared`: a reader's lock, which other readers
   * may hold at once and a writer waits for (a derived image's layer build
   * reads the other image's layer it is built on).
   */
  static async acquire(folder: string, options: { onWait?: () => void; signal?: AbortSignal; shared?: boolean } = {}): Promise<FolderLock> {
    mkdirSync(folder, { recursive: true });
    const fd = openSync(folder, 'r');
    const mode = options.shared ? '--shared' : '--exclusive';
    try {
      const attempt = spawnSync('flock', [mode, '--nonblock', '3'], { stdio: ['ignore', 'ignore', 'pipe', fd] });
      if (attempt.error) throw new Error(`Cannot lock ${folder}: flock (util-linux) could not run: ${attempt.error.message}`);
      if (attempt.status !== 0) {
        if (attempt.status !== 1) throw new Error(`Cannot lock ${folder}: flock exited with ${attempt.status}: ${String(attempt.stderr).trim()}`);
        options.onWait?.();
        await waitForLock(folder, fd, mode, options.signal);
      }
      return new FolderLock(fd);
    } catch (error) {
      closeSync(fd);
      throw error;
    }
  }

  /** The lock when no other process holds it, else undefined: for work that may be skipped (gc leaves a cache a build is using). */
  static tryAcquire(folder: string): FolderLock | undefined {
    mkdirSync(folder, { recursive: true });
    const fd = openSync(folder, 'r');
    const attempt = spawnSync('flock', ['--exclusive', '--nonblock', '3'], { stdio: ['ignore', 'ignore', 'pipe', fd] });
    if (attempt.status === 0) return new FolderLock(fd);
    closeSync(fd);
    if (attempt.error || attempt.status !== 1)
      throw new Error(`Cannot lock ${folder}: flock exited with ${attempt.status}: ${attempt.error?.message ?? String(attempt.stderr).trim()}`);
    return undefined;
  }

  release(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
  }
}

function waitForLock(folder: string, fd: number, mode: string, signal?: AbortSignal): Promise<void> {
  signal?.throwIfAborted();
  return new Promise((resolve, reject) => {
    const child = spawn('flock', [mode, '3'], { stdio: ['ignore', 'ignore', 'pipe', fd] });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const onAbort = () => child.kill('SIGTERM');
    signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (error) => reject(new Error(`Cannot lock ${folder}: flock could not run: ${error.message}`)));
    child.on('exit', (code) => {
      signal?.removeEventListener('abort', onAbort);
      if (signal?.aborted) reject(signal.reason);
      else if (code === 0) resolve();
      else reject(new Error(`Cannot lock ${folder}: flock exited with ${code}: ${stderr.trim()}`));
    });
  });
}
