import { EventEmitter } from 'node:events';
import * as http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { TokenChecker } from './auth';
import { CacheStore, EmptyEntryError, EntryTooLargeError, isValidHash } from './store';

export interface CacheServerOptions {
  /** Where entries are stored; created if missing. */
  dir: string;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 3000; 0 picks any free port. */
  port?: number;
  /** Tokens that may GET and PUT. No tokens at all: an open server. */
  readWriteTokens?: readonly string[];
  /** Tokens that may only GET. */
  readOnlyTokens?: readonly string[];
  /** Largest entry a PUT may store; default DEFAULT_MAX_ENTRY_BYTES (8 GiB). Infinity: unlimited. */
  maxEntryBytes?: number;
  /**
   * How long a client may take to send a request's headers, in ms (default
   * 60 s). Counted from the first byte, however slowly the rest trickles in.
   */
  headersTimeoutMs?: number;
  /**
   * A connection with no traffic in either direction for this long is closed
   * (default 120 s). This, not a total limit, is what bounds a body: an upload
   * of many gigabytes over a slow link may take any time as long as it moves.
   */
  idleTimeoutMs?: number;
  /** A limit on a whole request, body included, in ms; 0 (the default): none. */
  requestTimeoutMs?: number;
  /** Connections open at once (default 256); more are closed as they arrive, so the server never runs out of file descriptors. */
  maxConnections?: number;
  /** Receives one line per request, and error details. Default: silent. */
  log?: (line: string) => void;
}

export interface CacheRequestEvent {
  method: string;
  /** The request path without its query string. */
  path: string;
  /** Set for /v1/cache/<hash> requests whose hash is valid. */
  hash?: string;
  /** The status sent, or 499 (nginx's "client closed request") when the client went away first. */
  status: number;
  /** Body bytes received (PUT) or sent (GET). */
  bytes: number;
  ms: number;
}

export interface CloseOptions {
  /** How long in-flight requests may take before their connections are cut; default: no limit. */
  graceMs?: number;
}

export interface RunningCacheServer {
  readonly url: string;
  readonly port: number;
  /** The absolute storage directory. */
  readonly dir: string;
  readonly authEnabled: boolean;
  /** Entries found at startup plus those published since. */
  readonly entryCount: number;
  /** Stops accepting connections and resolves once in-flight requests are done and cleaned up. */
  close(options?: CloseOptions): Promise<void>;
  on(event: 'request', listener: (event: CacheRequestEvent) => void): this;
  once(event: 'request', listener: (event: CacheRequestEvent) => void): this;
  off(event: 'request', listener: (event: CacheRequestEvent) => void): this;
}

export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_PORT = 3000;
/** Nx holds an artifact in memory to upload it; nothing bigger than this is a sane cache entry. */
export const DEFAULT_MAX_ENTRY_BYTES = 8 * 1024 ** 3;
export const DEFAULT_HEADERS_TIMEOUT_MS = 60_000;
export const DEFAULT_IDLE_TIMEOUT_MS = 120_000;
export const DEFAULT_MAX_CONNECTIONS = 256;

const CACHE_ROUTE = '/v1/cache';
const HEALTH_ROUTE = '/health';
const CLIENT_CLOSED_REQUEST = 499;
// A rejected request body up to this size is read and discarded so the
// keep-alive connection survives and the client surely sees the status;
// anything larger (or of unknown length) gets the connection closed instead.
const DRAIN_LIMIT_BYTES = 64 * 1024 * 1024;
const MAX_LOGGED_PATH_LENGTH = 200;

interface Outcome {
  status: number;
  bytes: number;
  hash?: string;
}

interface RequestContext {
  req: http.IncomingMessage;
  res: http.ServerResponse;
  path: string;
  /** The client sent `Expect: 100-continue` and waits before sending the body. */
  expectsContinue: boolean;
}

export async function startCacheServer(options: CacheServerOptions): Promise<RunningCacheServer> {
  const host = options.host ?? DEFAULT_HOST;
  const port = options.port ?? DEFAULT_PORT;
  const maxEntryBytes = options.maxEntryBytes ?? DEFAULT_MAX_ENTRY_BYTES;
  const limits: ConnectionLimits = {
    headersTimeoutMs: options.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS,
    idleTimeoutMs: options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
    requestTimeoutMs: options.requestTimeoutMs ?? 0,
    maxConnections: options.maxConnections ?? DEFAULT_MAX_CONNECTIONS,
  };
  if (!options.dir) throw new Error('startCacheServer: dir is required');
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new Error(`startCacheServer: port must be an integer from 0 to 65535, got ${port}`);
  }
  if (!(maxEntryBytes > 0)) {
    throw new Error(`startCacheServer: maxEntryBytes must be a positive number of bytes, got ${maxEntryBytes}`);
  }
  for (const [name, value] of Object.entries(limits)) {
    const positive = name === 'requestTimeoutMs' ? value >= 0 : value > 0;
    if (!(Number.isSafeInteger(value) && positive)) {
      throw new Error(`startCacheServer: ${name} must be a ${name === 'requestTimeoutMs' ? 'non-negative' : 'positive'} whole number, got ${value}`);
    }
  }
  if (limits.requestTimeoutMs > 0 && limits.requestTimeoutMs < limits.headersTimeoutMs) {
    throw new Error(`startCacheServer: requestTimeoutMs (${limits.requestTimeoutMs}) must be at least headersTimeoutMs (${limits.headersTimeoutMs})`);
  }
  const tokens = new TokenChecker(options.readWriteTokens ?? [], options.readOnlyTokens ?? []);
  const store = await CacheStore.open(options.dir);
  const server = new CacheServer(store, tokens, maxEntryBytes, limits, options.log ?? (() => undefined));
  await server.listen(host, port);
  return server;
}

interface ConnectionLimits {
  headersTimeoutMs: number;
  idleTimeoutMs: number;
  requestTimeoutMs: number;
  maxConnections: number;
}

class CacheServer extends EventEmitter implements RunningCacheServer {
  private readonly httpServer: http.Server;
  private readonly inFlight = new Set<Promise<void>>();
  private closing: Promise<void> | undefined;
  private address: { host: string; port: number } | undefined;

  constructor(
    private readonly store: CacheStore,
    private readonly tokens: TokenChecker,
    private readonly maxEntryBytes: number,
    limits: ConnectionLimits,
    private readonly log: (line: string) => void,
  ) {
    super();
    this.httpServer = http.createServer({
      // Set explicitly: Node derives the headers timeout from requestTimeout, and
      // requestTimeout 0 (no limit on a whole upload) would switch it off too.
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      // How often Node looks for expired requests: often enough for the timeouts to hold.
      connectionsCheckingInterval: Math.max(50, Math.min(30_000, Math.floor(limits.headersTimeoutMs / 4))),
    });
    this.httpServer.setTimeout(limits.idleTimeoutMs);
    this.httpServer.maxConnections = limits.maxConnections;
    this.httpServer.on('drop', (data?: { remoteAddress?: string }) => {
      this.log(
        `${new Date().toISOString()} connection from ${data?.remoteAddress ?? '?'} refused: ${limits.maxConnections} connections are open (maxConnections)`,
      );
    });
    // Node's headers timeout starts with a request's first byte: a connection that never sends one
    // would hold its descriptor until the idle timeout. It gets the headers timeout from its start.
    this.httpServer.on('connection', (socket: Socket) => {
      const silent = setTimeout(() => socket.destroy(), limits.headersTimeoutMs);
      silent.unref();
      socket.once('data', () => clearTimeout(silent));
      socket.once('close', () => clearTimeout(silent));
    });
    this.httpServer.on('request', (req, res) => this.track(this.handle(req, res, false)));
    // Answering before `100 Continue` lets a client skip uploading a body that
    // would be refused anyway (curl asks for larger uploads).
    this.httpServer.on('checkContinue', (req, res) => this.track(this.handle(req, res, true)));
  }

  get url(): string {
    const { host, port } = this.listeningAddress();
    return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  }

  get port(): number {
    return this.listeningAddress().port;
  }

  get dir(): string {
    return this.store.dir;
  }

  get authEnabled(): boolean {
    return this.tokens.enabled;
  }

  get entryCount(): number {
    return this.store.entryCount;
  }

  listen(host: string, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (error: Error): void => {
        reject(new Error(`cannot listen on ${host}:${port}: ${error.message}`, { cause: error }));
      };
      this.httpServer.once('error', onError);
      this.httpServer.listen(port, host, () => {
        this.httpServer.off('error', onError);
        this.address = { host, port: (this.httpServer.address() as AddressInfo).port };
        resolve();
      });
    });
  }

  close(options: CloseOptions = {}): Promise<void> {
    this.closing ??= this.shutDown(options.graceMs ?? Number.POSITIVE_INFINITY);
    return this.closing;
  }

  private async shutDown(graceMs: number): Promise<void> {
    const closed = new Promise<void>((resolve) => this.httpServer.close(() => resolve()));
    this.httpServer.closeIdleConnections();
    const cutOff = Number.isFinite(graceMs) ? setTimeout(() => this.httpServer.closeAllConnections(), graceMs) : undefined;
    try {
      await closed;
      // Handlers clean up their temp files after the socket is gone; wait for that too.
      await Promise.allSettled([...this.inFlight]);
    } finally {
      clearTimeout(cutOff);
    }
  }

  private listeningAddress(): { host: string; port: number } {
    if (!this.address) throw new Error('the cache server is not listening');
    return this.address;
  }

  private track(handling: Promise<void>): void {
    this.inFlight.add(handling);
    void handling.finally(() => {
      this.inFlight.delete(handling);
      // A response that began before close() kept its connection alive; once
      // it is done, drop the connection rather than wait out the keep-alive timeout.
      if (this.closing) setImmediate(() => this.httpServer.closeIdleConnections());
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse, expectsContinue: boolean): Promise<void> {
    const startedAt = performance.now();
    const context: RequestContext = { req, res, path: pathOf(req.url ?? '/'), expectsContinue };
    let outcome: Outcome;
    try {
      outcome = await this.route(context);
    } catch (error) {
      this.log(`error: ${req.method} ${logSafe(context.path)}: ${describeError(error)}`);
      outcome = this.reply(context, 500, 'internal server error');
    }
    const event: CacheRequestEvent = {
      method: req.method ?? '?',
      path: context.path,
      ...(outcome.hash === undefined ? {} : { hash: outcome.hash }),
      status: outcome.status,
      bytes: outcome.bytes,
      ms: Math.round(performance.now() - startedAt),
    };
    this.log(`${new Date().toISOString()} ${event.method} ${logSafe(event.path)} ${event.status} ${event.bytes}B ${event.ms}ms`);
    this.emit('request', event);
  }

  private async route(context: RequestContext): Promise<Outcome> {
    const { path } = context;
    if (path === HEALTH_ROUTE) return this.handleHealth(context);
    if (path === CACHE_ROUTE || path.startsWith(`${CACHE_ROUTE}/`)) {
      return this.handleCache(context, path.slice(CACHE_ROUTE.length + 1));
    }
    return this.reply(context, 404, `no such route: ${logSafe(path)}`);
  }

  private handleHealth(context: RequestContext): Outcome {
    if (context.req.method !== 'GET') return this.reply(context, 405, 'use GET', { Allow: 'GET' });
    return this.replyJson(context, 200, { status: 'ok', entries: this.store.entryCount });
  }

  private async handleCache(context: RequestContext, hashSegment: string): Promise<Outcome> {
    const { req } = context;
    if (req.method !== 'GET' && req.method !== 'PUT') {
      return this.reply(context, 405, 'use GET or PUT', { Allow: 'GET, PUT' });
    }
    const access = this.tokens.accessFor(req.headers.authorization);
    if (access === 'unauthenticated') {
      return this.reply(context, 401, 'missing or unknown bearer token', { 'WWW-Authenticate': 'Bearer' });
    }
    if (req.method === 'PUT' && access !== 'read-write') {
      return this.reply(context, 403, 'this token may only read');
    }
    // The raw segment is checked, never a decoded one: `%2e%2e` stays invalid.
    if (!isValidHash(hashSegment)) {
      const shown = JSON.stringify(logSafe(hashSegment));
      return this.reply(context, 400, `invalid cache hash ${shown}: expected [A-Za-z0-9_-]{1,128}`);
    }
    const outcome = req.method === 'PUT' ? await this.handlePut(context, hashSegment) : await this.handleGet(context, hashSegment);
    return { ...outcome, hash: hashSegment };
  }

  private async handleGet(context: RequestContext, hash: string): Promise<Outcome> {
    const entry = await this.store.openEntry(hash);
    if (!entry) return this.reply(context, 404, `no entry ${hash}`);
    const { res } = context;
    res.writeHead(200, {
      'Content-Type': 'application/octet-stream',
      'Content-Length': entry.size,
      ...this.connectionHeader(false),
    });
    let sent = 0;
    async function* countSent(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
      for await (const chunk of source) {
        sent += chunk.length;
        yield chunk;
      }
    }
    try {
      // The read stream closes the file when it ends or is destroyed.
      await pipeline(entry.file.createReadStream(), countSent, res);
      return { status: 200, bytes: sent };
    } catch (error) {
      // Headers are out: all that is left is to report what happened.
      // A client that read the whole body may close before the response's
      // own end is seen here: that GET was served.
      if (isClientGone(error)) return { status: sent === entry.size ? 200 : CLIENT_CLOSED_REQUEST, bytes: sent };
      this.log(`error: GET ${hash}: ${describeError(error)}`);
      return { status: 500, bytes: sent };
    }
  }

  private async handlePut(context: RequestContext, hash: string): Promise<Outcome> {
    const { req, res } = context;
    const declaredLength = declaredBodyLength(req);
    // Without Content-Length or chunked encoding a request has no body: it would store an empty entry for good.
    if (declaredLength === undefined && req.headers['transfer-encoding'] === undefined) {
      return this.reply(context, 411, 'a PUT needs a Content-Length (or a chunked body)');
    }
    if (declaredLength === 0) return this.reply(context, 400, 'empty body: a cache entry is never empty');
    if (declaredLength !== undefined && declaredLength > this.maxEntryBytes) {
      return this.reply(context, 413, `entry of ${declaredLength} bytes is larger than the limit of ${this.maxEntryBytes} bytes`);
    }
    if (await this.store.has(hash)) return this.reply(context, 409, `entry ${hash} already exists`);
    if (context.expectsContinue) res.writeContinue();
    const received = { bytes: 0 };
    try {
      const { published } = await this.store.put(hash, req, this.maxEntryBytes, received);
      // Lost the race against a concurrent PUT of the same hash.
      if (!published) return { ...this.reply(context, 409, `entry ${hash} already exists`), bytes: received.bytes };
      return { ...this.reply(context, 200, 'stored'), bytes: received.bytes };
    } catch (error) {
      return { ...this.putFailed(context, hash, error), bytes: received.bytes };
    }
  }

  private putFailed(context: RequestContext, hash: string, error: unknown): Outcome {
    if (error instanceof EntryTooLargeError) {
      return this.reply(context, 413, error.message, { Connection: 'close' });
    }
    if (error instanceof EmptyEntryError) return this.reply(context, 400, error.message);
    // Filesystem errors carry a syscall; anything else while the body was
    // still arriving means the client disconnected or sent less than it declared.
    const fromFilesystem = (error as NodeJS.ErrnoException).syscall !== undefined;
    if (!fromFilesystem && !context.req.complete) {
      context.res.destroy();
      return { status: CLIENT_CLOSED_REQUEST, bytes: 0 };
    }
    this.log(`error: PUT ${hash}: ${describeError(error)}`);
    if ((error as NodeJS.ErrnoException).code === 'ENOSPC') {
      return this.reply(context, 507, 'no space left on the cache server', { Connection: 'close' });
    }
    return this.reply(context, 500, 'internal server error', { Connection: 'close' });
  }

  /** Sends a short text response; a request body still unread is drained, or the connection closed after it. */
  private reply(context: RequestContext, status: number, message: string, headers: http.OutgoingHttpHeaders = {}): Outcome {
    return this.send(context, status, 'text/plain; charset=utf-8', `${message}\n`, headers);
  }

  private replyJson(context: RequestContext, status: number, body: unknown): Outcome {
    return this.send(context, status, 'application/json', JSON.stringify(body), {});
  }

  private send(context: RequestContext, status: number, contentType: string, body: string, headers: http.OutgoingHttpHeaders): Outcome {
    const { req, res } = context;
    if (res.headersSent || res.destroyed) return { status, bytes: 0 };
    const drainBody = !context.expectsContinue && !req.complete && bodyIsDrainable(req, this.maxEntryBytes);
    res.writeHead(status, {
      'Content-Type': contentType,
      'Content-Length': Buffer.byteLength(body),
      ...this.connectionHeader(!req.complete && !drainBody),
      ...headers,
    });
    res.end(body);
    // Discard the unread body so the connection can carry the next request.
    if (drainBody) req.resume();
    return { status, bytes: 0 };
  }

  /**
   * `Connection: close` when the request body will not be read (the next
   * request could not be found on the connection) or the server is shutting down.
   */
  private connectionHeader(bodyLeftUnread: boolean): http.OutgoingHttpHeaders {
    return bodyLeftUnread || this.closing ? { Connection: 'close' } : {};
  }
}

function pathOf(url: string): string {
  const queryStart = url.indexOf('?');
  return queryStart === -1 ? url : url.slice(0, queryStart);
}

function declaredBodyLength(req: http.IncomingMessage): number | undefined {
  const header = req.headers['content-length'];
  return header === undefined ? undefined : Number(header);
}

function bodyIsDrainable(req: http.IncomingMessage, maxEntryBytes: number): boolean {
  const declaredLength = declaredBodyLength(req);
  if (declaredLength === undefined) return req.headers['transfer-encoding'] === undefined;
  return declaredLength <= Math.min(maxEntryBytes, DRAIN_LIMIT_BYTES);
}

function isClientGone(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === 'ERR_STREAM_PREMATURE_CLOSE' || code === 'ECONNRESET' || code === 'EPIPE';
}

function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Request paths come from the network: shorten them and escape anything unprintable before logging. */
function logSafe(text: string): string {
  const shortened = text.length > MAX_LOGGED_PATH_LENGTH ? `${text.slice(0, MAX_LOGGED_PATH_LENGTH)}…` : text;
  return shortened.replace(/[^\x21-\x7e]/g, (character) => `\\x${character.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
