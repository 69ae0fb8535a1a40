/**
 * @nx/devkit, loaded on first use. Nx forks a process for every task, and
 * importing the devkit there costs about 0.2 s of CPU: a layer task that
 * never needs it (the usual case) starts without it. Types are imported
 * from '@nx/devkit' as usual; only values go through these.
 */

/** The devkit's public API. */
export function nxDevkit(): typeof import('@nx/devkit') {
  return require('@nx/devkit');
}

/** The devkit's internal entry point (readTargetDefaultsForTarget, emitPluginWorkerLog). */
export function nxDevkitInternal(): typeof import('@nx/devkit/internal') {
  return require('@nx/devkit/internal');
}
