import { createServer, request as httpRequest, type Server } from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';

/**
 * A tiny HTTP proxy on 127.0.0.1 for proxy tests: CONNECT tunnels and plain
 * absolute-URI requests, to the addresses in `routes` only ("host:port" as
 * the client asks for it → "127.0.0.1:port" where it really is). Anything
 * else gets 502, so a test proves that a request went through the proxy by
 * asking for an address only the proxy can reach.
 */
export interface TestProxy {
  url: string;
  /** "CONNECT host:port" or "GET http://host:port/path", in order. */
  requests: string[];
  close(): Promise<void>;
}

export async function startTestProxy(routes: Record<string, string>): Promise<TestProxy> {
  const requests: string[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((request, response) => {
    requests.push(`${request.method} ${request.url}`);
    let target: URL;
    try {
      target = new URL(request.url ?? '');
    } catch {
      response.writeHead(400).end('absolute URI expected');
      return;
    }
    const route = routes[target.host];
    if (!route) {
      response.writeHead(502).end(`no route to ${target.host}`);
      return;
    }
    const [host, port] = route.split(':');
    const upstream = httpRequest(
      { host, port: Number(port), method: request.method, path: target.pathname + target.search, headers: request.headers },
      (answer) => {
        response.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(response);
      },
    );
    upstream.on('error', () => response.destroy());
    request.pipe(upstream);
  });
  server.on('connect', (request, client: Socket, head: Buffer) => {
    requests.push(`CONNECT ${request.url}`);
    const route = routes[request.url ?? ''];
    if (!route) {
      client.end('HTTP/1.1 502 Bad Gateway\r\n\r\n');
      return;
    }
    const [host, port] = route.split(':');
    const upstream = connect(Number(port), host, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream));
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** A port on 127.0.0.1 that nothing listens on (it was free a moment ago): direct connections are refused. */
export async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
