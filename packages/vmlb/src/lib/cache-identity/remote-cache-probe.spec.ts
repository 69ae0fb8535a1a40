import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { probeRemoteCache, proxyFor } from './remote-cache-probe';

/** A real HTTP server on loopback that answers every request with `status` and records what it got. */
async function serve(status: number, options: { delayMs?: number } = {}): Promise<{ url: string; requests: IncomingMessage[]; server: Server }> {
  const requests: IncomingMessage[] = [];
  const server = createServer((request, response) => {
    requests.push(request);
    setTimeout(() => {
      response.statusCode = status;
      response.end(status === 200 ? 'cached bytes' : '');
    }, options.delayMs ?? 0).unref();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests, server };
}

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(
    servers.splice(0).map((server) => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    }),
  );
});

async function probeAgainst(status: number, options: { delayMs?: number; token?: string; timeoutMs?: number; suffix?: string } = {}) {
  const { url, requests, server } = await serve(status, options);
  servers.push(server);
  const result = await probeRemoteCache({ server: url + (options.suffix ?? ''), token: options.token, timeoutMs: options.timeoutMs, env: {} });
  return { result, requests };
}

describe('probeRemoteCache', () => {
  it('calls a server that answers 404 for an unknown hash available, with one GET of /v1/cache/<hash> carrying the token', async () => {
    const { result, requests } = await probeAgainst(404, { token: 'secret' });
    expect(result).toEqual({ verdict: 'available', status: 404 });
    expect(requests).toHaveLength(1);
    expect(requests[0].method).toBe('GET');
    expect(requests[0].url).toBe('/v1/cache/0');
    expect(requests[0].headers.authorization).toBe('Bearer secret');
  });

  it('accepts a server URL with a trailing slash', async () => {
    const { result, requests } = await probeAgainst(404, { suffix: '/' });
    expect(result.verdict).toBe('available');
    expect(requests[0].url).toBe('/v1/cache/0');
  });

  it('calls a server that answers 200 available', async () => {
    await expect(probeAgainst(200)).resolves.toMatchObject({ result: { verdict: 'available', status: 200 } });
  });

  it.each([500, 502, 503])('calls a server answering %i unavailable, naming the status', async (status) => {
    const { result } = await probeAgainst(status);
    expect(result).toEqual({ verdict: 'unavailable', reason: expect.stringContaining(`HTTP ${status}`) });
  });

  it.each([401, 403])('calls a server refusing the token (%i) unavailable and points at the token variable', async (status) => {
    const { result } = await probeAgainst(status);
    expect(result).toEqual({ verdict: 'unavailable', reason: expect.stringContaining('NX_SELF_HOSTED_REMOTE_CACHE_ACCESS_TOKEN') });
  });

  it('calls a server that does not answer in time unavailable, naming the timeout', async () => {
    const { result } = await probeAgainst(404, { delayMs: 2000, timeoutMs: 200 });
    expect(result).toEqual({ verdict: 'unavailable', reason: 'it did not answer within 0.2 s' });
  });

  it('calls a closed port unavailable: connection refused', async () => {
    const { url, server } = await serve(404);
    await new Promise((resolve) => server.close(resolve));
    await expect(probeRemoteCache({ server: url, env: {} })).resolves.toEqual({
      verdict: 'unavailable',
      reason: expect.stringContaining('ECONNREFUSED'),
    });
  });

  it('calls a malformed server setting unavailable, quoting it', async () => {
    await expect(probeRemoteCache({ server: 'not a url', env: {} })).resolves.toEqual({
      verdict: 'unavailable',
      reason: "NX_SELF_HOSTED_REMOTE_CACHE_SERVER 'not a url' is not a URL",
    });
    await expect(probeRemoteCache({ server: 'ftp://cache', env: {} })).resolves.toMatchObject({ verdict: 'unavailable' });
  });

  it('does not judge a server reached through a proxy (Nx uses the proxy, this probe could not)', async () => {
    const result = await probeRemoteCache({ server: 'http://cache.example:3000', env: { HTTP_PROXY: 'http://proxy:8080' } });
    expect(result).toEqual({ verdict: 'inconclusive', reason: expect.stringContaining('proxy http://proxy:8080') });
  });
});

describe('proxyFor', () => {
  const url = new URL('https://cache.corp.example/v1/cache/0');
  it('picks HTTPS_PROXY for https and HTTP_PROXY for http', () => {
    expect(proxyFor(url, { HTTPS_PROXY: 'http://p:1', HTTP_PROXY: 'http://q:2' })).toBe('http://p:1');
    expect(proxyFor(new URL('http://cache/'), { HTTPS_PROXY: 'http://p:1', HTTP_PROXY: 'http://q:2' })).toBe('http://q:2');
  });
  it('honours NO_PROXY by exact host, by domain suffix and by *', () => {
    expect(proxyFor(url, { HTTPS_PROXY: 'http://p:1', NO_PROXY: 'cache.corp.example' })).toBeUndefined();
    expect(proxyFor(url, { HTTPS_PROXY: 'http://p:1', NO_PROXY: 'localhost,.corp.example' })).toBeUndefined();
    expect(proxyFor(url, { HTTPS_PROXY: 'http://p:1', no_proxy: '*' })).toBeUndefined();
    expect(proxyFor(url, { HTTPS_PROXY: 'http://p:1', NO_PROXY: 'other.example' })).toBe('http://p:1');
  });
});
