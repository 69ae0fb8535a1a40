import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import { once } from 'node:events';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { startCacheServer, type CacheRequestEvent, type CacheServerOptions, type RunningCacheServer } from './server';
import { nextRequestEvent, request, sendRaw, sleep, slowBody, waitFor } from './testing/http';

describe('cache server', () => {
  let root: string;
  let dir: string;
  let running: RunningCacheServer[];

  beforeEach(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'vmlb-cache-server-'));
    dir = path.join(root, 'store');
    running = [];
  });

  afterEach(async () => {
    await Promise.all(running.map((server) => server.close()));
    await fs.rm(root, { recursive: true, force: true });
  });

  async function start(options: Partial<CacheServerOptions> = {}): Promise<RunningCacheServer> {
    const server = await startCacheServer({ dir, host: '127.0.0.1', port: 0, ...options });
    running.push(server);
    return server;
  }

  const entryPath = (hash: string): string => path.join(dir, hash);
  const tempFiles = (): Promise<string[]> => fs.readdir(path.join(dir, '.tmp'));
  const exists = (file: string): Promise<boolean> =>
    fs.stat(file).then(
      () => true,
      () => false,
    );

  describe('GET and PUT', () => {
    it('answers 404 for a hash it does not have', async () => {
      const server = await start();
      const response = await request(server.url, '/v1/cache/1234567890');
      expect(response.status).toBe(404);
    });

    it('returns exactly the bytes a PUT stored, as application/octet-stream with Content-Length', async () => {
      const server = await start();
      const putsByHash = new Map<string, number>();
      server.on('request', (event) => {
        if (event.method === 'PUT' && event.hash) putsByHash.set(event.hash, (putsByHash.get(event.hash) ?? 0) + 1);
      });
      const body = randomBytes(300_000);

      const put = await request(server.url, '/v1/cache/1234567890', { method: 'PUT', body });
      const get = await request(server.url, '/v1/cache/1234567890');

      expect(put.status).toBe(200);
      expect(get.status).toBe(200);
      expect(get.headers['content-type']).toBe('application/octet-stream');
      expect(get.headers['content-length']).toBe(String(body.length));
      expect(get.body.equals(body)).toBe(true);
      expect(await fs.readFile(entryPath('1234567890'))).toEqual(body);
      expect(putsByHash).toEqual(new Map([['1234567890', 1]]));
      expect(await tempFiles()).toEqual([]);
    });

    it('refuses an empty body with 400, with Content-Length: 0 or chunked, and stores nothing (issue 18.10)', async () => {
      const server = await start();
      const withLength = await request(server.url, '/v1/cache/empty', { method: 'PUT', body: Buffer.alloc(0) });
      expect(withLength.status).toBe(400);
      expect(withLength.body.toString()).toBe('empty body: a cache entry is never empty\n');
      const chunked = await request(server.url, '/v1/cache/empty', { method: 'PUT', body: Readable.from([]) });
      expect(chunked.status).toBe(400);
      expect((await request(server.url, '/v1/cache/empty')).status).toBe(404);
      expect(await exists(entryPath('empty'))).toBe(false);
      expect(await tempFiles()).toEqual([]);
    });

    it('answers 411 to a PUT with neither Content-Length nor a chunked body, and stores nothing (issue 18.10)', async () => {
      const server = await start();
      const answer = await exchangeRaw(server.url, 'PUT /v1/cache/nolength HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
      expect(answer).toMatch(/^HTTP\/1\.1 411 Length Required\r\n/);
      expect(answer).toContain('a PUT needs a Content-Length (or a chunked body)');
      expect(await exists(entryPath('nolength'))).toBe(false);
    });

    it('writes entries 0600 in a 0700 folder, even into a folder that was world-readable and with umask 0 (issue 18.10)', async () => {
      await fs.mkdir(dir, { mode: 0o755 });
      await fs.chmod(dir, 0o755);
      const umask = process.umask(0);
      try {
        const server = await start();
        expect((await request(server.url, '/v1/cache/private', { method: 'PUT', body: Buffer.from('layer') })).status).toBe(200);
      } finally {
        process.umask(umask);
      }
      expect((await fs.stat(entryPath('private'))).mode & 0o777).toBe(0o600);
      expect((await fs.stat(dir)).mode & 0o777).toBe(0o700);
      expect((await fs.stat(path.join(dir, '.tmp'))).mode & 0o777).toBe(0o700);
    });

    it('refuses a second PUT of the same hash with 409 and keeps the first body', async () => {
      const server = await start();
      const first = Buffer.from('first');
      await request(server.url, '/v1/cache/42', { method: 'PUT', body: first });

      const second = await request(server.url, '/v1/cache/42', { method: 'PUT', body: Buffer.from('second') });

      expect(second.status).toBe(409);
      expect((await request(server.url, '/v1/cache/42')).body.toString()).toBe('first');
      expect(await tempFiles()).toEqual([]);
    });

    it('keeps the connection usable after refusing a PUT whose body it did not store', async () => {
      const server = await start();
      await request(server.url, '/v1/cache/kept', { method: 'PUT', body: Buffer.from('first') });
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      const send = (method: string, body?: Buffer) =>
        new Promise<{ status: number; reusedSocket: boolean }>((resolve, reject) => {
          const req = http.request(`${server.url}/v1/cache/kept`, { method, agent }, (res) => {
            res.resume();
            res.on('end', () => resolve({ status: res.statusCode ?? 0, reusedSocket: req.reusedSocket }));
          });
          req.on('error', reject);
          req.end(body);
        });

      const refused = await send('PUT', randomBytes(200_000));
      const next = await send('GET');
      agent.destroy();

      expect(refused.status).toBe(409);
      expect(next).toEqual({ status: 200, reusedSocket: true });
    });

    it('reports each request as an event with method, path, hash, status, bytes and duration', async () => {
      const server = await start();
      const events: CacheRequestEvent[] = [];
      server.on('request', (event) => events.push(event));

      // A GET's event follows the last byte out, which may reach the client first.
      const getFinished = nextRequestEvent(server, (event) => event.method === 'GET');

      await request(server.url, '/v1/cache/7', { method: 'PUT', body: Buffer.alloc(1000) });
      await request(server.url, '/v1/cache/7?ignored=1');
      await getFinished;

      expect(events).toEqual([
        { method: 'PUT', path: '/v1/cache/7', hash: '7', status: 200, bytes: 1000, ms: expect.any(Number) },
        { method: 'GET', path: '/v1/cache/7', hash: '7', status: 200, bytes: 1000, ms: expect.any(Number) },
      ]);
    });

    it('logs one line per request', async () => {
      const lines: string[] = [];
      const server = await start({ log: (line) => lines.push(line) });
      await request(server.url, '/v1/cache/8');
      expect(lines).toEqual([expect.stringMatching(/^\S+Z GET \/v1\/cache\/8 404 0B \d+ms$/)]);
    });
  });

  describe('health and routing', () => {
    it('answers /health with ok and the entry count, without a token', async () => {
      const server = await start({ readWriteTokens: ['rw-secret'] });
      await request(server.url, '/v1/cache/1', {
        method: 'PUT',
        headers: { Authorization: 'Bearer rw-secret' },
        body: Buffer.from('x'),
      });

      const health = await request(server.url, '/health');

      expect(health.status).toBe(200);
      expect(health.headers['content-type']).toBe('application/json');
      expect(JSON.parse(health.body.toString())).toEqual({ status: 'ok', entries: 1 });
    });

    it('answers unknown routes with 404 and wrong methods with 405', async () => {
      const server = await start();
      expect((await request(server.url, '/')).status).toBe(404);
      expect((await request(server.url, '/v2/cache/1')).status).toBe(404);
      expect((await request(server.url, '/v1/cachex/1')).status).toBe(404);

      const deleted = await request(server.url, '/v1/cache/1', { method: 'DELETE' });
      expect(deleted.status).toBe(405);
      expect(deleted.headers.allow).toBe('GET, PUT');
      expect((await request(server.url, '/v1/cache/1', { method: 'POST', body: Buffer.from('x') })).status).toBe(405);
      expect((await request(server.url, '/health', { method: 'PUT', body: Buffer.from('x') })).status).toBe(405);
    });

    it('removes stale temp files and counts existing entries at startup', async () => {
      await fs.mkdir(path.join(dir, '.tmp'), { recursive: true });
      await fs.writeFile(path.join(dir, '.tmp', '123.999.deadbeef'), 'half an upload');
      await fs.writeFile(entryPath('111'), 'one');
      await fs.writeFile(entryPath('222'), 'two');

      const server = await start();

      expect(await tempFiles()).toEqual([]);
      expect(server.entryCount).toBe(2);
      expect((await request(server.url, '/v1/cache/111')).body.toString()).toBe('one');
    });
  });

  describe('tokens', () => {
    const READ_WRITE = 'rw-secret';
    const READ_ONLY = 'ro-secret';
    const bearer = (token: string): http.OutgoingHttpHeaders => ({ Authorization: `Bearer ${token}` });
    const put = (server: RunningCacheServer, hash: string, headers: http.OutgoingHttpHeaders) =>
      request(server.url, `/v1/cache/${hash}`, { method: 'PUT', headers, body: Buffer.from(`body of ${hash}`) });
    const get = (server: RunningCacheServer, hash: string, headers: http.OutgoingHttpHeaders) => request(server.url, `/v1/cache/${hash}`, { headers });

    let server: RunningCacheServer;
    beforeEach(async () => {
      server = await start({ readWriteTokens: [READ_WRITE], readOnlyTokens: [READ_ONLY] });
    });

    it('answers 401 without a bearer token, for GET and PUT', async () => {
      const response = await get(server, '1', {});
      expect(response.status).toBe(401);
      expect(response.headers['www-authenticate']).toBe('Bearer');
      expect((await put(server, '1', {})).status).toBe(401);
      expect((await get(server, '1', { Authorization: `Basic ${Buffer.from(`x:${READ_WRITE}`).toString('base64')}` })).status).toBe(401);
      expect(await exists(entryPath('1'))).toBe(false);
    });

    it('answers 401 for an unknown token, including prefixes and extensions of real ones', async () => {
      for (const token of ['nope', 'rw-secre', 'rw-secretx', READ_WRITE.toUpperCase()]) {
        expect((await get(server, '1', bearer(token))).status).toBe(401);
        expect((await put(server, '1', bearer(token))).status).toBe(401);
      }
      expect(await exists(entryPath('1'))).toBe(false);
    });

    it('lets a read-write token PUT and both kinds of token GET', async () => {
      expect((await put(server, '5', bearer(READ_WRITE))).status).toBe(200);
      const byReadOnly = await get(server, '5', bearer(READ_ONLY));
      expect(byReadOnly.status).toBe(200);
      expect(byReadOnly.body.toString()).toBe('body of 5');
      expect((await get(server, '5', bearer(READ_WRITE))).status).toBe(200);
      expect((await get(server, '6', bearer(READ_ONLY))).status).toBe(404);
    });

    it('answers 403 to a PUT with a read-only token and stores nothing', async () => {
      const response = await put(server, '9', bearer(READ_ONLY));
      expect(response.status).toBe(403);
      expect(await exists(entryPath('9'))).toBe(false);
      expect(await tempFiles()).toEqual([]);
    });

    it('accepts the scheme name in any case', async () => {
      expect((await put(server, '10', { Authorization: `bearer ${READ_WRITE}` })).status).toBe(200);
    });

    it('refuses to start with a token that cannot be sent in a header, without echoing it', async () => {
      const spaced = await startCacheServer({ dir, port: 0, readWriteTokens: ['has space'] }).catch((error: Error) => error);
      const empty = await startCacheServer({ dir, port: 0, readOnlyTokens: ['fine', ''] }).catch((error: Error) => error);

      expect(spaced).toBeInstanceOf(Error);
      expect((spaced as Error).message).toMatch(/read-write token #1 .*printable ASCII/);
      expect((spaced as Error).message).not.toContain('has space');
      expect((empty as Error).message).toMatch(/read-only token #2 is empty/);
    });
  });

  describe('hash validation', () => {
    const maliciousPaths = [
      '/v1/cache/..',
      '/v1/cache/../escape',
      '/v1/cache/../../etc/passwd',
      '/v1/cache/..%2fescape',
      '/v1/cache/%2e%2e',
      '/v1/cache/%2E%2E%2Fescape',
      '/v1/cache/%2e%2e%2f%2e%2e%2fescape',
      '/v1/cache/.',
      '/v1/cache/.tmp',
      '/v1/cache/a.b',
      '/v1/cache/a%00b',
      '/v1/cache/%41',
      '/v1/cache/a/b',
      '/v1/cache//escape',
      '/v1/cache/..\\escape',
      '/v1/cache/',
      '/v1/cache',
      `/v1/cache/${'1'.repeat(129)}`,
    ];

    it.each(maliciousPaths)('answers 400 to GET and PUT of %s and touches nothing outside --dir', async (malicious) => {
      const server = await start();

      const put = await request(server.url, malicious, { method: 'PUT', body: Buffer.from('evil') });
      const get = await request(server.url, malicious);

      expect(put.status).toBe(400);
      expect(get.status).toBe(400);
      expect(await fs.readdir(root)).toEqual(['store']);
      expect(await fs.readdir(dir)).toEqual(['.tmp']);
      expect(await tempFiles()).toEqual([]);
    });

    it('accepts the longest allowed hash and every allowed character', async () => {
      const server = await start();
      for (const hash of ['1'.repeat(128), 'AZaz09_-']) {
        expect((await request(server.url, `/v1/cache/${hash}`, { method: 'PUT', body: Buffer.from(hash) })).status).toBe(200);
        expect((await request(server.url, `/v1/cache/${hash}`)).body.toString()).toBe(hash);
      }
    });
  });

  describe('size limit', () => {
    const LIMIT = 1024;

    it('answers 413 from Content-Length alone, before any of the body is sent', async () => {
      const server = await start({ maxEntryBytes: LIMIT });
      const neverSent = new Readable({ read: () => undefined });

      const response = await request(server.url, '/v1/cache/big', {
        method: 'PUT',
        headers: { 'Content-Length': LIMIT + 1 },
        body: neverSent,
      });
      neverSent.destroy();

      expect(response.status).toBe(413);
      expect(response.body.toString()).toContain(String(LIMIT + 1));
      expect(await exists(entryPath('big'))).toBe(false);
      expect(await tempFiles()).toEqual([]);
    });

    it('answers 413 once a body of unknown length passes the limit, leaving nothing behind', async () => {
      const server = await start({ maxEntryBytes: LIMIT });
      const finished = nextRequestEvent(server, (event) => event.hash === 'chunked');

      const response = await request(server.url, '/v1/cache/chunked', {
        method: 'PUT',
        body: slowBody(
          [512, 512, 512, 512, 512].map((size) => Buffer.alloc(size)),
          20,
        ),
      });

      expect(response.status).toBe(413);
      expect((await finished).bytes).toBeGreaterThan(LIMIT);
      expect(await exists(entryPath('chunked'))).toBe(false);
      expect(await tempFiles()).toEqual([]);
    });

    it('accepts a body of exactly the limit, with or without Content-Length', async () => {
      const server = await start({ maxEntryBytes: LIMIT });
      const body = randomBytes(LIMIT);
      expect((await request(server.url, '/v1/cache/exact', { method: 'PUT', body })).status).toBe(200);
      const chunked = await request(server.url, '/v1/cache/exact-chunked', {
        method: 'PUT',
        body: slowBody([body.subarray(0, 600), body.subarray(600)], 5),
      });
      expect(chunked.status).toBe(200);
      expect((await request(server.url, '/v1/cache/exact-chunked')).body.equals(body)).toBe(true);
    });
  });

  describe('limits on what a client can hold (issue 18.9, 18.10)', () => {
    it('refuses an entry over 8 GiB by default, from its Content-Length alone', async () => {
      const server = await start();
      const response = await request(server.url, '/v1/cache/huge', {
        method: 'PUT',
        headers: { 'Content-Length': 8 * 1024 ** 3 + 1 },
        body: Readable.from([]),
      });
      expect(response.status).toBe(413);
      expect(response.body.toString()).toContain(`larger than the limit of ${8 * 1024 ** 3} bytes`);
    });

    it('closes a connection whose headers trickle in one byte at a time, with 408, once the headers timeout passes', async () => {
      const server = await start({ headersTimeoutMs: 1000 });
      const socket = net.connect(server.port, '127.0.0.1');
      await once(socket, 'connect');
      let received = '';
      socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
      socket.on('error', () => undefined);
      // Every byte keeps the connection from being idle; only a limit on the headers as a whole ends it.
      const headers = `GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ${'x'.repeat(10_000)}`;
      let sent = 0;
      const drip = setInterval(() => {
        if (!socket.destroyed) socket.write(headers[sent++ % headers.length]);
      }, 100);
      try {
        await closed(socket);
      } finally {
        clearInterval(drip);
      }
      expect(received).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
      expect(sent).toBeLessThan(headers.length);
    });

    it('holds at most maxConnections; idle connections are closed by the headers timeout, and then a real client gets in', async () => {
      const logs: string[] = [];
      const server = await start({ headersTimeoutMs: 1000, maxConnections: 2, log: (line) => logs.push(line) });
      const idle = await Promise.all([openIdle(server.port), openIdle(server.port)]);
      // A third connection is closed at once, without an answer.
      const refused = await exchangeRaw(server.url, 'GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
      expect(refused).toBe('');
      expect(logs.some((line) => line.includes('refused: 2 connections are open (maxConnections)'))).toBe(true);
      // The idle ones never send headers: the server closes them...
      await Promise.all(idle.map(closed));
      // ...and the next client is served.
      expect((await request(server.url, '/health')).status).toBe(200);
    });

    it('refuses limits that are not positive whole numbers, and a request timeout shorter than the headers timeout', async () => {
      await expect(start({ maxConnections: 0 })).rejects.toThrow('startCacheServer: maxConnections must be a positive whole number, got 0');
      await expect(start({ headersTimeoutMs: 60_000, requestTimeoutMs: 1000 })).rejects.toThrow(
        'requestTimeoutMs (1000) must be at least headersTimeoutMs (60000)',
      );
    });
  });

  describe('interrupted uploads', () => {
    it('leaves no entry and no temp file when the client disconnects mid-body', async () => {
      const server = await start();
      const finished = nextRequestEvent(server, (event) => event.hash === 'aborted');
      const req = http.request(`${server.url}/v1/cache/aborted`, {
        method: 'PUT',
        headers: { 'Content-Length': 1024 * 1024 },
        agent: false,
      });
      req.on('error', () => undefined);
      req.write(randomBytes(64 * 1024));
      // Disconnect only once the server is demonstrably writing the upload.
      await waitFor(async () => {
        const [temp] = await tempFiles();
        return temp !== undefined && (await fs.stat(path.join(dir, '.tmp', temp))).size > 0;
      }, 'the upload to reach a temp file');

      req.destroy();

      expect(await finished).toMatchObject({ status: 499, bytes: expect.any(Number) });
      expect((await finished).bytes).toBeGreaterThan(0);
      expect(await exists(entryPath('aborted'))).toBe(false);
      expect(await tempFiles()).toEqual([]);
      expect((await request(server.url, '/v1/cache/aborted')).status).toBe(404);
    });

    it('leaves no entry and no temp file when the body is shorter than its Content-Length', async () => {
      const server = await start();
      const finished = nextRequestEvent(server, (event) => event.hash === 'short');

      await sendRaw(server.url, `PUT /v1/cache/short HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n${'x'.repeat(10)}`);

      expect((await finished).status).toBe(499);
      expect(await exists(entryPath('short'))).toBe(false);
      expect(await tempFiles()).toEqual([]);
    });
  });

  describe('atomicity', () => {
    const CHUNK_COUNT = 8;
    const slowChunks = (): Buffer[] => Array.from({ length: CHUNK_COUNT }, () => randomBytes(64 * 1024));

    it('shows nothing to GETs while a PUT is in flight, then the complete entry', async () => {
      const server = await start();
      const chunks = slowChunks();
      let putSettled = false;
      const put = request(server.url, '/v1/cache/slow', { method: 'PUT', body: slowBody(chunks, 100) });
      void put.finally(() => (putSettled = true));

      const statusesDuringPut: number[] = [];
      await waitFor(async () => (await tempFiles()).length > 0, 'the upload to start');
      while (!putSettled) {
        const { status } = await request(server.url, '/v1/cache/slow');
        if (!putSettled) statusesDuringPut.push(status);
        await sleep(40);
      }

      expect((await put).status).toBe(200);
      expect(statusesDuringPut.length).toBeGreaterThanOrEqual(5);
      expect(new Set(statusesDuringPut)).toEqual(new Set([404]));
      expect((await request(server.url, '/v1/cache/slow')).body.equals(Buffer.concat(chunks))).toBe(true);
    });

    it('publishes exactly one of two concurrent PUTs of the same hash; the other gets 409', async () => {
      const server = await start();
      const slowPut = request(server.url, '/v1/cache/race', { method: 'PUT', body: slowBody(slowChunks(), 50) });
      await waitFor(async () => (await tempFiles()).length > 0, 'the slow upload to start');
      const quickBody = randomBytes(1000);

      const quickPut = await request(server.url, '/v1/cache/race', { method: 'PUT', body: quickBody });

      expect(quickPut.status).toBe(200);
      expect((await slowPut).status).toBe(409);
      expect((await request(server.url, '/v1/cache/race')).body.equals(quickBody)).toBe(true);
      expect(await tempFiles()).toEqual([]);
    });
  });

  describe('close', () => {
    it('stops accepting connections but lets an in-flight upload finish', async () => {
      const server = await start();
      const chunks = Array.from({ length: 5 }, () => randomBytes(10_000));
      const put = request(server.url, '/v1/cache/closing', { method: 'PUT', body: slowBody(chunks, 60) });
      await waitFor(async () => (await tempFiles()).length > 0, 'the upload to start');

      const closed = server.close();

      await expect(request(server.url, '/health')).rejects.toThrow(/ECONNREFUSED/);
      expect((await put).status).toBe(200);
      await closed;
      expect(await fs.readFile(entryPath('closing'))).toEqual(Buffer.concat(chunks));
    });

    it('finishes an in-flight download on a keep-alive connection, then closes it without waiting out keep-alive', async () => {
      const server = await start();
      const size = 20 * 1024 * 1024;
      await fs.writeFile(entryPath('download'), Buffer.alloc(size));
      const agent = new http.Agent({ keepAlive: true });
      const response = await new Promise<http.IncomingMessage>((resolve, reject) => {
        http.get(`${server.url}/v1/cache/download`, { agent }, resolve).on('error', reject);
      });
      response.pause(); // the server stays mid-response until we read on

      const closeStarted = Date.now();
      const closed = server.close();
      let received = 0;
      for await (const chunk of response) received += (chunk as Buffer).length;
      await closed;

      expect(received).toBe(size);
      expect(Date.now() - closeStarted).toBeLessThan(3_000); // Node's keep-alive timeout alone is 5 s
      agent.destroy();
    });

    it('cuts connections still busy after the grace period, leaving no temp file', async () => {
      const server = await start();
      const req = http.request(`${server.url}/v1/cache/stalled`, {
        method: 'PUT',
        headers: { 'Content-Length': 1000 },
        agent: false,
      });
      req.on('error', () => undefined);
      req.write('only the start');
      await waitFor(async () => (await tempFiles()).length > 0, 'the upload to start');

      await server.close({ graceMs: 50 });

      expect(await tempFiles()).toEqual([]);
      expect(await exists(entryPath('stalled'))).toBe(false);
    });
  });
});

/** Sends raw bytes on a new connection and returns everything the server sent back before closing it. */
async function exchangeRaw(baseUrl: string, data: string): Promise<string> {
  const { hostname, port } = new URL(baseUrl);
  const socket = net.connect(Number(port), hostname);
  let received = '';
  socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
  socket.on('error', () => undefined);
  socket.write(data);
  await closed(socket);
  return received;
}

/** A connection that sends nothing (what a stuck or hostile client holds open). */
async function openIdle(port: number): Promise<net.Socket> {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  // Reads what the server says before closing (Node's 408, when its headers check comes first):
  // unread, it would hold back the socket's 'end' and 'close' for good.
  socket.resume();
  await once(socket, 'connect');
  return socket;
}

/** Resolves when the socket is closed, however (events.once would reject on a reset). */
function closed(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => (socket.destroyed ? resolve() : socket.once('close', () => resolve())));
}
