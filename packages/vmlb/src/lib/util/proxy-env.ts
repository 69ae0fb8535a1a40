import * as http from 'node:http';
import * as https from 'node:https';
import type { Socket } from 'node:net';
import { HttpsProxyAgent } from 'https-proxy-agent';
import { type Dispatcher, EnvHttpProxyAgent } from 'undici';

/**
 * The proxy variables (`https_proxy`, `http_proxy`, `no_proxy`, lower case
 * first, then upper case), for the two HTTP clients vmlb has: base downloads
 * (undici's fetch) and the S3 client (the AWS SDK on node:http). Neither
 * honours them by itself. Both follow undici's reading of them: an https
 * URL uses https_proxy, else http_proxy; `no_proxy` lists host names (a
 * name also matches its subdomains; a leading `.` or `*.` is ignored),
 * optionally with `:port`, separated by commas or spaces, or is `*`.
 */
export interface ProxySettings {
  httpProxy?: string;
  httpsProxy?: string;
  noProxy: string;
}

export function proxySettings(env: NodeJS.ProcessEnv = process.env): ProxySettings {
  const first = (...names: string[]) => names.map((name) => env[name]).find((value) => value !== undefined && value !== '');
  return {
    httpProxy: first('http_proxy', 'HTTP_PROXY'),
    httpsProxy: first('https_proxy', 'HTTPS_PROXY'),
    noProxy: first('no_proxy', 'NO_PROXY') ?? '',
  };
}

/** Whether any proxy is configured at all. */
export function hasProxy(settings: ProxySettings): boolean {
  return Boolean(settings.httpProxy || settings.httpsProxy);
}

/** The proxy a request to `target` goes through, or undefined for a direct connection. */
export function proxyFor(target: string | URL, settings: ProxySettings): string | undefined {
  const url = typeof target === 'string' ? new URL(target) : target;
  const proxy = url.protocol === 'https:' ? (settings.httpsProxy ?? settings.httpProxy) : url.protocol === 'http:' ? settings.httpProxy : undefined;
  if (!proxy) return undefined;
  const hostname = url.host.replace(/:\d*$/, '').toLowerCase();
  const port = Number.parseInt(url.port, 10) || (url.protocol === 'https:' ? 443 : 80);
  return bypassesProxy(hostname, port, settings.noProxy) ? undefined : proxy;
}

function bypassesProxy(hostname: string, port: number, noProxy: string): boolean {
  if (noProxy.trim() === '*') return true;
  for (const entry of noProxy.split(/[,\s]/)) {
    if (!entry) continue;
    const parsed = /^(.+):(\d+)$/.exec(entry);
    const host = (parsed ? parsed[1] : entry).replace(/^\*?\./, '').toLowerCase();
    if (parsed && Number.parseInt(parsed[2], 10) !== port) continue;
    if (hostname === host || hostname.endsWith(`.${host}`)) return true;
  }
  return false;
}

/** A dispatcher for undici's fetch that honours the proxy variables of `env`; undefined when none is set. */
export function proxyDispatcher(env: NodeJS.ProcessEnv = process.env): Dispatcher | undefined {
  const settings = proxySettings(env);
  if (!hasProxy(settings)) return undefined;
  // Explicit values: undici would otherwise read process.env for whatever is left undefined.
  return new EnvHttpProxyAgent({ httpProxy: settings.httpProxy ?? '', httpsProxy: settings.httpsProxy ?? '', noProxy: settings.noProxy });
}

/**
 * A node:http agent that sends each request through the proxy `proxyFor`
 * picks (an HTTP CONNECT tunnel, also for http:// targets), or directly.
 * For the AWS SDK's NodeHttpHandler; undefined when no proxy is set.
 */
export function proxyHttpAgent(env: NodeJS.ProcessEnv = process.env): http.Agent | undefined {
  const settings = proxySettings(env);
  if (!hasProxy(settings)) return undefined;
  const tunnels = new Map<string, HttpsProxyAgent<string>>();
  const direct = { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) };
  class EnvProxyAgent extends HttpsProxyAgent<string> {
    override connect(request: http.ClientRequest, options: Parameters<HttpsProxyAgent<string>['connect']>[1]): Promise<Socket> {
      const scheme = options.secureEndpoint ? 'https' : 'http';
      const host = options.host?.includes(':') ? `[${options.host}]` : options.host;
      const proxy = proxyFor(`${scheme}://${host}:${options.port}`, settings);
      // agent-base (under HttpsProxyAgent) hands the request to an agent returned here instead of a socket.
      if (!proxy) return Promise.resolve(direct[scheme] as unknown as Socket);
      let tunnel = tunnels.get(proxy);
      if (!tunnel) {
        tunnel = new HttpsProxyAgent(proxy, { keepAlive: true });
        tunnels.set(proxy, tunnel);
      }
      return tunnel.connect(request, options);
    }

    /** The SDK destroys its agents with the client: the per-request ones go too. */
    override destroy(): void {
      super.destroy();
      direct.http.destroy();
      direct.https.destroy();
      for (const tunnel of tunnels.values()) tunnel.destroy();
    }
  }
  // The proxy given here is never used directly: connect() picks one per request.
  return new EnvProxyAgent((settings.httpsProxy ?? settings.httpProxy)!, { keepAlive: true });
}
