import { nxDevkit } from './nx-devkit';

/**
 * Runs an executor body and reports a failure as one clear message instead
 * of a stack trace (which `--verbose` still shows): users act on the message.
 */
export async function reportFailure(work: () => Promise<void>): Promise<{ success: boolean }> {
  try {
    await work();
    return { success: true };
  } catch (error) {
    const { logger } = nxDevkit();
    logger.error(`vmlb: ${(error as Error).message}`);
    if (process.env.NX_VERBOSE_LOGGING === 'true') logger.error((error as Error).stack ?? '');
    return { success: false };
  }
}
