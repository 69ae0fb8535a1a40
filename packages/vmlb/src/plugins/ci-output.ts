// The one function, not nx's devkit-internals: that import costs every task run's plugin worker about 0.5 s.
import { isCI } from '../lib/util/ci';
import type { VmlbPluginOptions } from './options';

/**
 * In CI, stream every task's output as it is printed, as `--outputStyle=stream`
 * does: without a terminal Nx shows a successful dependency task's output
 * only at the end, if at all, so a 2-minute debootstrap printed nothing.
 * Left alone when the run chose an output style itself (flag or
 * NX_STREAM_OUTPUT), or nx.json's vmlb options say `streamOutputInCI: false`.
 * Returns whether it turned streaming on.
 */
export function streamOutputInCI(options: VmlbPluginOptions | undefined, argv: readonly string[], env: NodeJS.ProcessEnv = process.env, ci = isCI()): boolean {
  if (options?.streamOutputInCI === false || env.NX_STREAM_OUTPUT !== undefined || !ci) return false;
  if (argv.some((arg) => /^--output-?style(=|$)/i.test(arg))) return false;
  env.NX_STREAM_OUTPUT = 'true';
  // Prefixed with the task's project, as --outputStyle=stream prints it, so interleaved lines stay readable.
  env.NX_PREFIX_OUTPUT ??= 'true';
  return true;
}
