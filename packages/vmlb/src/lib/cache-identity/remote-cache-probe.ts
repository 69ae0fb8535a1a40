import type { IncomingMessage } from 'node:http';

/**
 * Whether Nx's self-hosted remote cache (NX_SELF_HOSTED_REMOTE_CACHE_SERVER)
 * answers, checked before a run starts.
 *
 * Nx fails the whole run when a cache GET fails (server down, 5xx, 401/403),
 * so a cache outage would stop every image build. One GET of a hash nobody
 * stores tells us beforehand: 404 (or 200) means the server works; anything
 * else means this run had better use the local cache only.
 */
export type ProbeResult =
  | { verdict: 'available'; status: number }
  | { verdict: 'unavailable'; reason: string }
  /** Cannot tell from here (a proxy or TLS setup this probe does not share with Nx): leave Nx to it. */
  | { verdict: 'inconclusive'; reason: string };

/** Hash the probe asks for: Nx hashes are decimal digits; nothing is ever stored under this one. */
export const PROBE_HASH = '0';

export const DEFAULT_PROBE_TIMEOUT_MS = 3000;

/**
 * Carries the "remote cache not usable" warning from a probe that ran in the
 * Nx daemon (whose output nobody sees) to the image build, which prints it.
 */
export const REMOTE_CACHE_WARNING_ENV = 'VMLB_REMOTE_CACHE_WARNING';

export interface ProbeOptions {
  server: string;
  token?: string;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  /** The entry to ask for; default PROBE_HASH. With a real task hash the answer (200/404) says whether the server holds it. */
  hash?: string;
}

export async function probeRemoteCache(options: ProbeOptions): Promise<ProbeResult> {
  const env = options.env ?? process.env;
  const timeoutMs = options.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
  let url: URL;
  try {
    url = new URL(`${options.server.replace(/\/+$/, '')}/v1/cache/${encodeURIComponent(options.hash ?? PROBE_HASH)}`);
  } catch {
    return { verdict: 'unavailable', reason: `NX_SELF_HOSTED_REMOTE_CACHE_SERVER '${options.server}' is not a URL` };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return { verdict: 'unavailable', reason: `NX_SELF_HOSTED_REMOTE_CACHE_SERVER '${options.server}' is not an http:// or https:// URL` };
  }
  // Nx's client goes through HTTP(S)_PROXY; node's http does not, so a
  // direct probe could call a healthy server unreachable.
  const proxy = proxyFor(url, env);
  if (proxy) return { verdict: 'inconclusive', reason: `requests to ${url.host} go through the proxy ${proxy}` };

  const { request } = url.protocol === 'https:' ? await import('node:https') : await import('node:http');
  return new Promise<ProbeResult>((resolve) => {
    const req = request(
      url,
      {
        method: 'GET',
        headers: options.token ? { authorization: `Bearer ${options.token}` } : {},
        timeout: timeoutMs,
      },
      (response: IncomingMessage) => {
        // Only the status matters; an entry under the probe hash is not downloaded.
        response.destroy();
        const status = response.statusCode ?? 0;
        if (status === 200 || status === 404) resolve({ verdict: 'available', status });
        else if (status === 401 || status === 403)
          resolve({ verdict: 'unavailable', reason: `it refused the access token (HTTP ${status}); check NX_SELF_HOSTED_REMOTE_CACHE_ACCESS_TOKEN` });
        else resolve({ verdict: 'unavailable', reason: `it answered HTTP ${status}${response.statusMessage ? ` ${response.statusMessage}` : ''}` });
      },
    );
    req.on('timeout', () => {
      req.destroy();
      resolve({ verdict: 'unavailable', reason: `it did not answer within ${formatSeconds(timeoutMs)}` });
    });
    req.on('error', (error: NodeJS.ErrnoException) => {
      if (isTlsTrustError(error)) {
        resolve({ verdict: 'inconclusive', reason: `its TLS certificate is not trusted by node (${error.code}); Nx's own client may trust it` });
      } else {
        resolve({ verdict: 'unavailable', reason: describeConnectionError(error) });
      }
    });
    req.end();
  });
}

function describeConnectionError(error: NodeJS.ErrnoException): string {
  switch (error.code) {
    case 'ECONNREFUSED':
      return 'connection refused (ECONNREFUSED): nothing listens there';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `its host name does not resolve (${error.code})`;
    case 'ECONNRESET':
      return 'it closed the connection (ECONNRESET)';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `it cannot be reached (${error.code})`;
    default:
      return error.code ? `${error.message}` : `request failed: ${error.message}`;
  }
}

function isTlsTrustError(error: NodeJS.ErrnoException): boolean {
  return /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|ERR_TLS_CERT/.test(error.code ?? '');
}

/** The proxy Nx's client would use for `url`, from the usual environment variables. */
export function proxyFor(url: URL, env: NodeJS.ProcessEnv): string | undefined {
  const proxy =
    url.protocol === 'https:'
      ? env.HTTPS_PROXY || env.https_proxy || env.ALL_PROXY || env.all_proxy
      : env.HTTP_PROXY || env.http_proxy || env.ALL_PROXY || env.all_proxy;
  if (!proxy) return undefined;
  const noProxy = (env.NO_PROXY || env.no_proxy || '')
    .split(',')
    .map((entry) => entry.trim().toLowerCase())
    .filter(Boolean);
  const host = url.hostname.toLowerCase();
  const bypassed = noProxy.some((entry) => entry === '*' || host === entry.replace(/^\./, '') || host.endsWith(entry.startsWith('.') ? entry : `.${entry}`));
  return bypassed ? undefined : proxy;
}

function formatSeconds(ms: number): string {
  return `${(ms / 1000).toFixed(ms % 1000 === 0 ? 0 : 1)} s`;
}
