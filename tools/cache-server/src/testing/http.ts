import { once } from 'node:events';
import * as http from 'node:http';
import * as net from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { CacheRequestEvent, RunningCacheServer } from '../server';

export interface HttpResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export interface RequestOptions {
  method?: string;
  headers?: http.OutgoingHttpHeaders;
  /** Sent as is, or streamed (with backpressure) when a Readable. */
  body?: Buffer | Readable;
}

/**
 * One HTTP request on a fresh connection, `path` sent exactly as given (no
 * normalisation). Resolves with the response even when the server answers
 * before the body is sent and then closes the connection (413, 409).
 */
export function request(baseUrl: string, path: string, options: RequestOptions = {}): Promise<HttpResult> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    let responded = false;
    const req = http.request({ hostname, port, path, method: options.method ?? 'GET', headers: options.headers, agent: false }, (res) => {
      responded = true;
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    // After an early response the server may reset the connection mid-body.
    req.on('error', (error) => {
      if (!responded) reject(error);
    });
    const { body } = options;
    if (body instanceof Readable) {
      // Headers go out now, not with the first chunk: the server may answer before any body.
      req.flushHeaders();
      pipeline(body, req).catch((error: unknown) => {
        if (!responded) reject(error);
      });
    } else {
      req.end(body);
    }
  });
}

/** GETs `path` and hands the response body to `consume` as a stream (for bodies too large to hold). */
export function streamingGet(
  baseUrl: string,
  path: string,
  headers: http.OutgoingHttpHeaders,
  consume: (response: http.IncomingMessage) => Promise<void>,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${baseUrl}${path}`, { headers, agent: false }, (res) => {
      consume(res).then(() => resolve(res.statusCode ?? 0), reject);
    });
    req.on('error', reject);
  });
}

/** Writes raw bytes on a new TCP connection and closes it (for bodies shorter than declared). */
export async function sendRaw(baseUrl: string, data: string): Promise<void> {
  const { hostname, port } = new URL(baseUrl);
  const socket = net.connect(Number(port), hostname);
  await once(socket, 'connect');
  socket.on('error', () => undefined);
  socket.resume(); // read (and ignore) the response, or 'close' never comes
  socket.end(data);
  await once(socket, 'close');
}

/** A body that arrives in `chunks`, with a pause before each. */
export function slowBody(chunks: Buffer[], pauseMs: number): Readable {
  return Readable.from(
    (async function* () {
      for (const chunk of chunks) {
        await sleep(pauseMs);
        yield chunk;
      }
    })(),
  );
}

/** The next request event the server emits that matches `predicate`. */
export function nextRequestEvent(server: RunningCacheServer, predicate: (event: CacheRequestEvent) => boolean): Promise<CacheRequestEvent> {
  return new Promise((resolve) => {
    const listener = (event: CacheRequestEvent): void => {
      if (!predicate(event)) return;
      server.off('request', listener);
      resolve(event);
    };
    server.on('request', listener);
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export async function waitFor(condition: () => Promise<boolean> | boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}
