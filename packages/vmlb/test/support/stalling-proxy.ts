import { type AddressInfo, createServer, connect, type Socket } from 'node:net';

/** One HTTP request as the proxy saw it go through. */
export interface ProxiedRequest {
  method: string;
  path: string;
  /** Its Content-Length; undefined for a chunked or bodiless request. */
  length?: number;
}

/**
 * A TCP proxy on 127.0.0.1 in front of an HTTP server that passes every
 * byte both ways, except for one request: the first that `stallOn` picks
 * gets its head and half its body through, then nothing more, as a link
 * that froze mid-upload. A test kills the uploading process then, and the
 * server sees the connection drop with the body half-sent.
 */
export interface StallingProxy {
  url: string;
  /** Every request seen, in order. */
  requests: ProxiedRequest[];
  /** Settles with the stalled request once its half body has been passed on. */
  stalled: Promise<ProxiedRequest>;
  close(): Promise<void>;
}

/** Starts the proxy in front of `target` (an http:// URL); `stallOn` sees each request with its index among those seen. */
export async function startStallingProxy(target: string, stallOn: (request: ProxiedRequest, index: number) => boolean): Promise<StallingProxy> {
  const { hostname, port } = new URL(target);
  const requests: ProxiedRequest[] = [];
  const sockets = new Set<Socket>();
  let stallTaken = false;
  let reportStall: (request: ProxiedRequest) => void = () => undefined;
  const stalled = new Promise<ProxiedRequest>((resolve) => (reportStall = resolve));

  const server = createServer((client) => {
    const upstream = connect(Number(port), hostname);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => undefined);
    }
    upstream.pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    let pending = Buffer.alloc(0);
    // What to do with the bytes that come next: read a request head, pass N body bytes, or pass all / none.
    let mode: { kind: 'head' } | { kind: 'body'; left: number; then: 'head' | 'stall'; request: ProxiedRequest } | { kind: 'all' } | { kind: 'none' } = {
      kind: 'head',
    };
    client.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length > 0) {
        if (mode.kind === 'none') return void (pending = Buffer.alloc(0));
        if (mode.kind === 'all') {
          upstream.write(pending);
          return void (pending = Buffer.alloc(0));
        }
        if (mode.kind === 'body') {
          const passed = pending.subarray(0, mode.left);
          upstream.write(passed);
          pending = pending.subarray(passed.length);
          mode.left -= passed.length;
          if (mode.left > 0) return;
          if (mode.then === 'stall') {
            reportStall(mode.request);
            mode = { kind: 'none' };
          } else mode = { kind: 'head' };
          continue;
        }
        const end = pending.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = pending.subarray(0, end + 4);
        pending = pending.subarray(end + 4);
        upstream.write(head);
        const [requestLine, ...headerLines] = head.toString('latin1').split('\r\n');
        const [method, path] = requestLine.split(' ');
        const header = (name: string) =>
          headerLines
            .find((line) => line.toLowerCase().startsWith(`${name}:`))
            ?.slice(name.length + 1)
            .trim();
        const chunked = /chunked/i.test(header('transfer-encoding') ?? '');
        const length = chunked ? undefined : Number(header('content-length') ?? 0);
        const request: ProxiedRequest = { method, path, length };
        requests.push(request);
        const stall = !stallTaken && stallOn(request, requests.length - 1);
        if (stall) stallTaken = true;
        const half = Math.floor((length ?? 0) / 2);
        if (stall && half === 0) {
          reportStall(request);
          mode = { kind: 'none' };
        } else if (stall) mode = { kind: 'body', left: half, then: 'stall', request };
        else if (length === undefined) mode = { kind: 'all' };
        else if (length > 0) mode = { kind: 'body', left: length, then: 'head', request };
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    stalled,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
