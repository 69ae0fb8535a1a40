import { performance } from 'node:perf_hooks';
import type { Log } from './log';

/**
 * `VMLB_PAUSE_AT=<phase>` stops a layer build at one named phase and keeps
 * it there, saying so, until the build is interrupted (Ctrl-C, SIGTERM) or
 * killed. It is for looking at the host in the middle of a build (the
 * daemon, the loop devices, the mounted root) and for proving that an
 * interruption at any phase leaves nothing behind: the fault tests stop
 * builds at every phase this way. Unset, a pause point costs one lookup
 * and a performance mark: each phase is marked `vmlb:<phase>` on Node's
 * performance timeline, so a process that runs builds (the benchmarks) can
 * tell where a build's time goes.
 */
export const BUILD_PHASES = [
  /** The new overlay file exists; nothing is attached yet. */
  'overlay-created',
  /** qemu-storage-daemon is exporting the overlay through FUSE. */
  'daemon-started',
  /** A loop device is attached on the export; nothing is mounted on it yet. */
  'loop-attached',
  /** The root filesystem is mounted; the script has not started. */
  'mounted',
  /** The script has exited 0; its namespaces are gone, the disk is still mounted. */
  'script-finished',
  /** Tearing down: the filesystems are unmounted, the loop devices and daemon not yet released. */
  'teardown',
  /** Everything is released; the overlay is complete but not yet checked or renamed. */
  'detached',
  /** The overlay's digest is computed; it is about to be renamed into place. */
  'before-rename',
  /** The overlay is in place; its manifest and digest are not written yet. */
  'renamed',
] as const;
export type BuildPhase = (typeof BUILD_PHASES)[number];

export const PAUSE_ENV = 'VMLB_PAUSE_AT';

/** Performance marks of the phases are named this and the phase. */
export const PHASE_MARK_PREFIX = 'vmlb:';

/**
 * `VMLB_PAUSE_AT=failed`: not a phase every build passes, but where one
 * whose script fails stops, its overlay still attached: a shell in it on a
 * terminal, else held until interrupted (lib/build/layer-script.ts).
 */
export const PAUSE_ON_FAILURE = 'failed';

/** The phase `VMLB_PAUSE_AT` names, checked: an unknown name fails the build at once rather than never pausing. */
export function pausePhase(env: NodeJS.ProcessEnv = process.env): BuildPhase | typeof PAUSE_ON_FAILURE | undefined {
  const value = env[PAUSE_ENV];
  if (!value) return undefined;
  if (value === PAUSE_ON_FAILURE) return value;
  if (!(BUILD_PHASES as readonly string[]).includes(value)) {
    throw new Error(
      `${PAUSE_ENV}=${value} is not a build phase. Phases, in order: ${BUILD_PHASES.join(', ')}. ` +
        `Or ${PAUSE_ON_FAILURE}: keep a layer whose script fails as it failed, with a shell in it on a terminal.`,
    );
  }
  return value as BuildPhase;
}

/**
 * Waits at `phase` when `VMLB_PAUSE_AT` names it, until `signal` aborts
 * (the build then stops as it would have at that point). Returns at once
 * otherwise, and always when there is no signal: only a build that can be
 * interrupted is paused (not, say, `diff` attaching a disk to read it).
 */
export async function pausePoint(phase: BuildPhase, signal: AbortSignal | undefined, log: Log): Promise<void> {
  performance.mark(`${PHASE_MARK_PREFIX}${phase}`);
  if (!signal || pausePhase() !== phase) return;
  log(`vmlb: paused at ${phase} (${PAUSE_ENV}; pid ${process.pid}); interrupt to go on`);
  await untilAborted(signal);
}

/** Resolves once `signal` aborts (a build interrupted), keeping the process alive until then. */
export function untilAborted(signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    // A timer keeps the event loop, so the process waits for its signal handlers.
    const keepAlive = setInterval(() => undefined, 60_000);
    signal.addEventListener(
      'abort',
      () => {
        clearInterval(keepAlive);
        resolve();
      },
      { once: true },
    );
  });
}

/** A named point of a build: wait there when VMLB_PAUSE_AT names it, then stop if the build was interrupted. */
export async function checkpoint(phase: BuildPhase, signal: AbortSignal | undefined, log: (message: string) => void): Promise<void> {
  await pausePoint(phase, signal, log);
  signal?.throwIfAborted();
}
