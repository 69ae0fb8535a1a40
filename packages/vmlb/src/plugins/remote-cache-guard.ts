import type { PreTasksExecution } from '@nx/devkit';
import { nxDevkitInternal } from '../lib/util/nx-devkit';
import { DEFAULT_PROBE_TIMEOUT_MS, probeRemoteCache, REMOTE_CACHE_WARNING_ENV } from '../lib/cache-identity/remote-cache-probe';
import type { VmlbPluginOptions } from './options';

const SERVER_ENV = 'NX_SELF_HOSTED_REMOTE_CACHE_SERVER';
const TOKEN_ENV = 'NX_SELF_HOSTED_REMOTE_CACHE_ACCESS_TOKEN';

/**
 * Before Nx runs any task: when a self-hosted remote cache is configured
 * but does not answer, turn it off for this run and say so once, so that a
 * cache outage never fails a build (Nx itself fails the run on the first
 * cache GET that fails). Nx reads the server variable after this hook, and
 * applies the hook's environment changes to the run even when the hook runs
 * in the Nx daemon.
 */
export const guardRemoteCache: PreTasksExecution<VmlbPluginOptions> = async (options, context) => {
  const server = process.env[SERVER_ENV];
  if (!server || options?.remoteCacheProbe === false) return;
  if (process.env.NX_SKIP_REMOTE_CACHE === 'true' || process.env.NX_SKIP_NX_CACHE === 'true') return;
  if (context.argv.some((arg) => /^--skip-(remote|nx)-cache(=true)?$/.test(arg))) return;

  const timeoutMs = options?.remoteCacheProbeTimeout ?? DEFAULT_PROBE_TIMEOUT_MS;
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) {
    throw new Error(`vmlb plugin option remoteCacheProbeTimeout in nx.json must be a positive number of milliseconds, got ${JSON.stringify(timeoutMs)}.`);
  }
  const result = await probeRemoteCache({ server, token: process.env[TOKEN_ENV], timeoutMs });
  if (result.verdict !== 'unavailable') return;

  process.env[SERVER_ENV] = '';
  const message =
    `the remote cache ${server} is not usable: ${result.reason}. This run uses the local cache only: ` +
    `nothing is downloaded from or uploaded to it. Fix ${SERVER_ENV} (or set NX_SKIP_REMOTE_CACHE=true to skip this check).`;
  if (runningUnderNxDaemon()) {
    process.env[REMOTE_CACHE_WARNING_ENV] = message;
  } else {
    nxDevkitInternal().emitPluginWorkerLog('warn', `\n vmlb  warning: ${message}\n`);
  }
};

/**
 * Whether this hook runs for the Nx daemon (in it, or in a plugin worker it
 * started): there, what the hook prints reaches no terminal.
 */
function runningUnderNxDaemon(): boolean {
  return Boolean((globalThis as { NX_DAEMON?: unknown }).NX_DAEMON) || process.env.NX_DAEMON_PROCESS === 'true';
}
