/**
 * Turns SIGINT and SIGTERM into an AbortSignal for the duration of a build,
 * so that Ctrl-C (or Nx stopping the task) stops the running script and the
 * build still releases everything it attached before the process exits.
 */
export async function withInterruptSignal<T>(work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const onSignal = (name: NodeJS.Signals) => {
    if (!controller.signal.aborted) {
      process.stderr.write(`\nvmlb: ${name} received; stopping the script and releasing the disk...\n`);
      controller.abort(new Error(`interrupted by ${name}`));
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await work(controller.signal);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    // The default action was suppressed while the build cleaned up; now let
    // the interruption end the process with the conventional status.
    if (controller.signal.aborted) process.exitCode = 130;
  }
}
