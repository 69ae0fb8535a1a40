import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import * as fs from 'node:fs/promises';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { request, streamingGet } from './testing/http';

// The CLI runs as its own process, compiled from these sources into a temp
// directory: the test never depends on (or overwrites) a stale dist/.
const PACKAGE_DIR = path.resolve(__dirname, '..');
const MiB = 1024 * 1024;

describe('vmlb-cache-server CLI', () => {
  let root: string;
  let mainJs: string;
  const children = new Set<ChildProcess>();

  beforeAll(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'vmlb-cache-server-cli-'));
    const outDir = path.join(root, 'dist');
    await runNode([require.resolve('typescript/bin/tsc'), '-p', path.join(PACKAGE_DIR, 'tsconfig.json'), '--outDir', outDir]);
    mainJs = path.join(outDir, 'main.js');
  }, 60_000);

  afterEach(() => {
    for (const child of children) child.kill('SIGKILL');
    children.clear();
  });

  afterAll(async () => {
    await fs.rm(root, { recursive: true, force: true });
  });

  interface Finished {
    code: number | null;
    stdout: string;
    stderr: string;
  }

  function runCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Finished> {
    return new Promise((resolve) => {
      execFile(process.execPath, [mainJs, ...args], { env: { ...process.env, ...env }, timeout: 10_000 }, (error, stdout, stderr) => {
        resolve({ code: error ? ((error as { code?: number }).code ?? null) : 0, stdout, stderr });
      });
    });
  }

  interface Started {
    child: ChildProcess;
    url: string;
    stdout: () => string;
    stderr: () => string;
    exited: Promise<number | null>;
  }

  /** Starts the CLI and waits for its startup line. */
  async function startCli(args: string[], env: NodeJS.ProcessEnv = {}, nodeOptions: string[] = []): Promise<Started> {
    const child = spawn(process.execPath, [...nodeOptions, mainJs, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = once(child, 'exit').then(([code]) => {
      children.delete(child);
      return code as number | null;
    });
    const url = await new Promise<string>((resolve, reject) => {
      const check = (): void => {
        const match = /listening on (http:\/\/\S+?),/.exec(stdout);
        if (match) resolve(match[1]);
      };
      child.stdout!.on('data', check);
      void exited.then((code) => reject(new Error(`the CLI exited with ${code} before listening: ${stderr}`)));
    });
    return { child, url, stdout: () => stdout, stderr: () => stderr, exited };
  }

  it('prints usage for --help, including how to serve a team and where tokens should come from', async () => {
    const { code, stdout } = await runCli(['--help']);
    expect(code).toBe(0);
    expect(stdout).toContain('Usage: vmlb-cache-server --dir <path>');
    expect(stdout).toContain('0.0.0.0');
    expect(stdout).toContain('VMLB_CACHE_READ_WRITE_TOKENS');
    expect(stdout).toContain('VMLB_CACHE_READ_ONLY_TOKENS');
    expect(stdout).toMatch(/command lines show up in ps/);
  });

  it.each([
    [['--dir', 'DIR', '--port', 'abc'], /--port must be a number from 0 to 65535, got "abc"/],
    [['--dir', 'DIR', '--max-entry-size', '12X'], /--max-entry-size .* got "12X"/],
    [['--dir', 'DIR', '--verbose'], /unknown option --verbose/],
    [['--port', '3000'], /--dir is required/],
  ])('exits 2 for %j, naming the option and value', async (args, message) => {
    const dir = path.join(root, 'never-created');
    const { code, stdout, stderr } = await runCli(args.map((arg) => (arg === 'DIR' ? dir : arg)));
    expect(code).toBe(2);
    expect(stderr).toMatch(message);
    expect(stderr).toContain('--help');
    expect(stdout).toBe('');
    await expect(fs.stat(dir)).rejects.toThrow(/ENOENT/);
  });

  it('exits 2 for an unusable token from the environment without printing it', async () => {
    const { code, stderr } = await runCli(['--dir', path.join(root, 'x')], { VMLB_CACHE_READ_WRITE_TOKENS: 'sec ret' });
    expect(code).toBe(2);
    expect(stderr).toMatch(/read-write token #1/);
    expect(stderr).not.toContain('sec ret');
  });

  it('exits 1 naming the address when the port is taken', async () => {
    const blocker = http.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const { port } = blocker.address() as { port: number };
    try {
      const { code, stderr } = await runCli(['--dir', path.join(root, 'taken'), '--port', String(port)]);
      expect(code).toBe(1);
      expect(stderr).toContain(`cannot listen on 127.0.0.1:${port}`);
    } finally {
      blocker.close();
    }
  });

  it('without tokens: warns, serves /health, logs requests, and exits 0 on SIGINT', async () => {
    const dir = path.join(root, 'open');
    const server = await startCli(['--dir', dir, '--port', '0']);

    const health = await request(server.url, '/health');
    server.child.kill('SIGINT');

    expect(health.status).toBe(200);
    expect(JSON.parse(health.body.toString())).toEqual({ status: 'ok', entries: 0 });
    expect(await server.exited).toBe(0);
    expect(server.stdout()).toMatch(/listening on http:\/\/127\.0\.0\.1:\d+, auth OFF/);
    expect(server.stdout()).toMatch(/ GET \/health 200 0B \d+ms\n/);
    expect(server.stderr()).toMatch(/WARNING: no tokens configured/);
    expect((await fs.stat(dir)).isDirectory()).toBe(true);
  });

  it('streams a 256 MiB entry in and out with bounded memory, then exits 0 on SIGTERM', async () => {
    const SIZE = 256 * MiB;
    const CHUNK = MiB;
    const token = 'stream-secret';
    const auth = { Authorization: `Bearer ${token}` };
    const server = await startCli(['--dir', path.join(root, 'stream'), '--port', '0', '--max-entry-size', '1G'], { VMLB_CACHE_READ_WRITE_TOKENS: token }, [
      '--max-old-space-size=48',
    ]);
    expect(server.stdout()).toMatch(/auth on \(1 read-write, 0 read-only tokens\)/);

    // Generated as it is sent, hashed on the way: the test holds one chunk at a time.
    const sent = createHash('sha256');
    const body = Readable.from(
      (function* () {
        for (let offset = 0; offset < SIZE; offset += CHUNK) {
          const chunk = randomBytes(CHUNK);
          sent.update(chunk);
          yield chunk;
        }
      })(),
    );
    const put = await request(server.url, '/v1/cache/256mib', {
      method: 'PUT',
      headers: { ...auth, 'Content-Length': SIZE },
      body,
    });
    expect(put.status).toBe(200);

    const received = createHash('sha256');
    let receivedBytes = 0;
    const getStatus = await streamingGet(server.url, '/v1/cache/256mib', auth, async (response) => {
      expect(response.headers['content-length']).toBe(String(SIZE));
      for await (const chunk of response) {
        received.update(chunk as Buffer);
        receivedBytes += (chunk as Buffer).length;
      }
    });

    const peakRssBytes = await peakResidentBytes(server.child.pid!);
    server.child.kill('SIGTERM');

    expect(getStatus).toBe(200);
    expect(receivedBytes).toBe(SIZE);
    expect(received.digest('hex')).toBe(sent.digest('hex'));
    console.log(`cache server peak RSS (VmHWM) for a 256 MiB PUT and GET: ${(peakRssBytes / MiB).toFixed(1)} MiB`);
    expect(peakRssBytes).toBeLessThan(150 * MiB);
    expect(await server.exited).toBe(0);
    expect(server.stdout()).toMatch(new RegExp(` PUT /v1/cache/256mib 200 ${SIZE}B \\d+ms\\n`));
    expect(server.stdout()).toMatch(new RegExp(` GET /v1/cache/256mib 200 ${SIZE}B \\d+ms\\n`));
  }, 60_000);
});

/** The process's peak resident set size so far, from Linux's VmHWM. */
async function peakResidentBytes(pid: number): Promise<number> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  const match = /^VmHWM:\s+(\d+) kB$/m.exec(status);
  if (!match) throw new Error(`no VmHWM line in /proc/${pid}/status:\n${status}`);
  return Number(match[1]) * 1024;
}

function runNode(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, args, (error, stdout, stderr) => {
      if (error) reject(new Error(`node ${args.join(' ')} failed: ${stdout}${stderr}`));
      else resolve();
    });
  });
}
