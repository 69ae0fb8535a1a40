import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { execa } from 'execa';
import { type RunningCacheServer, startCacheServer } from '../../../tools/cache-server/src/server';
import { readFilesFromImage } from './support/disk-read';
import { NxWorkspace, cacheHits, remoteCacheHits, tasksRun } from './support/nx-workspace';

const CI_TOKEN = 'ci-read-write-token';
const LAPTOP_TOKEN = 'laptop-read-only-token';
const LAYERS = ['tiny-00_disk:build', 'tiny-10_hello:build', 'tiny-20_motd:build'];
const CHAIN = ['base', '00_disk', '10_hello', '20_motd'];

/** One PUT the cache server answered: the hash and the status it gave. */
interface Upload {
  hash: string;
  status: number;
}

/**
 * Layers shared between two checkouts through Nx's self-hosted remote cache,
 * served by tools/cache-server on loopback: the way a team shares what CI
 * built. Each test gets an empty server.
 */
describe('layers shared through a remote cache', () => {
  let cacheDir: string;
  let server: RunningCacheServer;
  let uploads: Upload[];
  const workspaces: NxWorkspace[] = [];

  const checkout = (): NxWorkspace => {
    const workspace = new NxWorkspace({ images: ['tiny'] });
    workspaces.push(workspace);
    return workspace;
  };
  const remoteEnv = (token: string) => ({ NX_SELF_HOSTED_REMOTE_CACHE_SERVER: server.url, NX_SELF_HOSTED_REMOTE_CACHE_ACCESS_TOKEN: token });
  const dist = (workspace: NxWorkspace, name: string) => workspace.path('dist/images/tiny', name);
  const digestOf = (workspace: NxWorkspace, layer: string) => readFileSync(dist(workspace, `${layer}.digest`), 'utf8');
  /** Paths inside every artifact the server holds (Nx's artifacts are gzipped tars). */
  const storedPaths = async (): Promise<string[]> => {
    const paths: string[] = [];
    for (const file of listFiles(cacheDir)) {
      const { stdout } = await execa('tar', ['-tzf', file]);
      paths.push(...stdout.split('\n'));
    }
    return paths;
  };
  const addHint = (workspace: NxWorkspace, layer: string, hint: string) => {
    const script = workspace.path('images/tiny', layer, 'build-layer');
    writeFileSync(script, readFileSync(script, 'utf8').replace('set -eu\n', `set -eu\n# ${hint}\n`));
  };

  beforeEach(async () => {
    cacheDir = mkdtempSync(path.join(tmpdir(), 'vmlb-remote-cache-'));
    uploads = [];
    server = await startCacheServer({ dir: cacheDir, port: 0, readWriteTokens: [CI_TOKEN], readOnlyTokens: [LAPTOP_TOKEN], log: () => undefined });
    server.on('request', (event) => {
      // Every PUT, also those refused before the hash is looked at (a read-only token's).
      if (event.method === 'PUT' && event.path.startsWith('/v1/cache/')) uploads.push({ hash: event.path.slice('/v1/cache/'.length), status: event.status });
    });
  });

  afterEach(async () => {
    // A test may have stopped the server already.
    await server.close().catch(() => undefined);
    rmSync(cacheDir, { recursive: true, force: true });
    workspaces.splice(0).forEach((workspace) => workspace.remove());
  });

  it('2. a second checkout with empty caches gets every layer from the remote cache, bit-identical', async () => {
    const ci = checkout();
    const ciOutput = await ci.nxOk(['build', 'image-tiny'], { env: remoteEnv(CI_TOKEN) });
    expect(tasksRun(ciOutput)).toEqual(['image-tiny:base', 'image-tiny:build', ...LAYERS]);
    expect(uploads.map((upload) => upload.status)).toEqual([200, 200, 200, 200]);

    const laptop = checkout();
    const laptopOutput = await laptop.nxOk(['build', 'image-tiny'], { env: remoteEnv(LAPTOP_TOKEN) });
    expect(remoteCacheHits(laptopOutput)).toEqual(['image-tiny:base', ...LAYERS]);
    expect(tasksRun(laptopOutput)).toEqual(['image-tiny:build']);
    expect(laptopOutput).not.toContain(': in no cache, building (');
    expect(uploads).toHaveLength(4);

    for (const name of CHAIN) {
      expect(digestOf(laptop, name)).toBe(digestOf(ci, name));
      expect(readFileSync(dist(laptop, `${name}.qcow2`)).equals(readFileSync(dist(ci, `${name}.qcow2`)))).toBe(true);
    }
    await expect(execa('qemu-img', ['compare', dist(ci, 'image.qcow2'), dist(laptop, 'image.qcow2')])).resolves.toMatchObject({ exitCode: 0 });
    expect(await readFilesFromImage(dist(laptop, 'image.qcow2'), ['/etc/hello', '/etc/motd'])).toEqual({
      '/etc/hello': 'hello from layer 10_hello of tiny',
      '/etc/motd': 'Welcome to tiny, built by vmlb.',
    });
  });

  it('3. a # noshare layer is cached on its machine only: never uploaded, a local hit there, rebuilt elsewhere', async () => {
    const ci = checkout();
    addHint(ci, '10_hello', 'noshare');
    const first = await ci.nxOk(['build', 'image-tiny', '--output-style=static'], { env: remoteEnv(CI_TOKEN) });
    expect(tasksRun(first)).toEqual(['image-tiny:base', 'image-tiny:build', ...LAYERS]);
    expect(first).toContain("vmlb: 10_hello is noshare: kept in this machine's layer store");
    // base, 00_disk and 20_motd went up; 10_hello never did.
    expect(uploads.map((upload) => upload.status)).toEqual([200, 200, 200]);
    const stored = await storedPaths();
    expect(stored).toContain('dist/images/tiny/20_motd.qcow2');
    expect(stored.filter((entry) => entry.includes('10_hello'))).toEqual([]);
    const ciHello = digestOf(ci, '10_hello');

    // Second run on the same machine: the noshare layer comes from the local store, the rest from Nx's local cache.
    const second = await ci.nxOk(['build', 'image-tiny', '--output-style=static'], { env: remoteEnv(CI_TOKEN) });
    expect(cacheHits(second)).toEqual(['image-tiny:base', 'tiny-00_disk:build', 'tiny-20_motd:build']);
    expect(second).toContain("vmlb: 10_hello is noshare: already in dist/, matching this machine's layer store");
    // (Nx replays the recorded output of its cache hits; only 10_hello's own output is live.)
    expect(second).not.toContain('10_hello of image tiny: in no cache, building');

    // Also after dist/ is gone: copied back from the store, same bytes.
    rmSync(ci.path('dist'), { recursive: true });
    const third = await ci.nxOk(['build', 'image-tiny', '--output-style=static'], { env: remoteEnv(CI_TOKEN) });
    expect(third).toContain("vmlb: 10_hello is noshare: restored from this machine's layer store");
    expect(third).not.toContain('10_hello of image tiny: in no cache, building');
    expect(digestOf(ci, '10_hello')).toBe(ciHello);
    expect(uploads).toHaveLength(3);

    // Another machine (a laptop with a read-only token) shares everything but 10_hello.
    const laptop = checkout();
    addHint(laptop, '10_hello', 'noshare');
    const elsewhere = await laptop.nxOk(['build', 'image-tiny', '--output-style=static'], { env: remoteEnv(LAPTOP_TOKEN) });
    expect(remoteCacheHits(elsewhere)).toEqual(expect.arrayContaining(['image-tiny:base', 'tiny-00_disk:build']));
    expect(elsewhere).toContain('10_hello of image tiny: in no cache, building');
    // A rebuilt chroot layer differs in its bytes (ext4 records mount times), and then
    // the layer above it must be rebuilt too; had the bytes matched, it would be shared.
    const helloBytesDiffer = digestOf(laptop, '10_hello') !== ciHello;
    if (helloBytesDiffer) {
      expect(tasksRun(elsewhere)).toEqual(['image-tiny:build', 'tiny-10_hello:build', 'tiny-20_motd:build']);
      // The read-only token's upload of its own 20_motd was refused, and the run still succeeded.
      expect(uploads.slice(3).map((upload) => upload.status)).toEqual([403]);
    } else {
      expect(remoteCacheHits(elsewhere)).toContain('tiny-20_motd:build');
    }
    expect(await readFilesFromImage(dist(laptop, 'image.qcow2'), ['/etc/hello', '/etc/motd'])).toEqual({
      '/etc/hello': 'hello from layer 10_hello of tiny',
      '/etc/motd': 'Welcome to tiny, built by vmlb.',
    });

    // Editing a noshare layer rebuilds it: the store is keyed by the task hash, never a stale hit.
    writeFileSync(ci.path('images/tiny/10_hello/build-layer'), '#!/bin/sh\nset -eu\n# noshare\necho edited > /etc/hello\n', { mode: 0o755 });
    const edited = await ci.nxOk(['build', 'image-tiny', '--output-style=static'], { env: remoteEnv(CI_TOKEN) });
    expect(edited).toContain('10_hello of image tiny: in no cache, building');
    expect(await readFilesFromImage(dist(ci, 'image.qcow2'), ['/etc/hello'])).toEqual({ '/etc/hello': 'edited' });
    expect((await storedPaths()).filter((entry) => entry.includes('10_hello'))).toEqual([]);
  });

  it('4. a # nocache layer is stored nowhere: not uploaded, not in the local cache, rebuilt on every run', async () => {
    const ci = checkout();
    addHint(ci, '20_motd', 'nocache');
    for (let run = 1; run <= 2; run++) {
      const output = await ci.nxOk(['build', 'image-tiny', '--output-style=static'], { env: remoteEnv(CI_TOKEN) });
      expect(output).toContain('20_motd of image tiny: in no cache, building');
      expect(tasksRun(output)).toContain('tiny-20_motd:build');
    }
    expect(uploads).toHaveLength(3);
    const uploaded = await storedPaths();
    expect(uploaded).toContain('dist/images/tiny/10_hello.qcow2');
    expect(uploaded.filter((entry) => entry.includes('20_motd'))).toEqual([]);
    const localCache = listFiles(ci.path('.nx/cache')).map((file) => path.relative(ci.path('.nx/cache'), file));
    expect(localCache.filter((file) => file.endsWith('10_hello.qcow2'))).toHaveLength(1);
    expect(localCache.filter((file) => file.includes('20_motd.'))).toEqual([]);
  });

  describe('5. a remote cache outage', () => {
    it('with the server stopped: one warning, the run uses the local cache and succeeds', async () => {
      const url = server.url;
      await server.close();
      const ci = checkout();
      const output = await ci.nxOk(['build', 'image-tiny'], { env: { ...remoteEnv(CI_TOKEN), NX_SELF_HOSTED_REMOTE_CACHE_SERVER: url } });
      expect(occurrences(output, 'vmlb  warning: the remote cache')).toBe(1);
      expect(output).toContain('connection refused (ECONNREFUSED)');
      expect(tasksRun(output)).toEqual(['image-tiny:base', 'image-tiny:build', ...LAYERS]);
      // The local cache still works during the outage.
      const again = await ci.nxOk(['build', 'image-tiny'], { env: { ...remoteEnv(CI_TOKEN), NX_SELF_HOSTED_REMOTE_CACHE_SERVER: url } });
      expect(cacheHits(again)).toEqual(['image-tiny:base', ...LAYERS]);
    });

    it('under the Nx daemon (where the probe runs in a worker of the daemon): the image build prints the warning', async () => {
      const url = server.url;
      await server.close();
      const ci = checkout();
      const env = { ...remoteEnv(CI_TOKEN), NX_SELF_HOSTED_REMOTE_CACHE_SERVER: url, NX_DAEMON: 'true' };
      try {
        const output = await ci.nxOk(['build', 'image-tiny'], { env });
        expect(occurrences(output, 'vmlb: warning: the remote cache')).toBe(1);
        expect(output).toContain('connection refused (ECONNREFUSED)');
        expect(tasksRun(output)).toEqual(['image-tiny:base', 'image-tiny:build', ...LAYERS]);
      } finally {
        await ci.nx(['daemon', '--stop'], { env });
      }
    });

    it('with a server answering 500: one warning and success; without the probe Nx fails the run', async () => {
      const broken = createServer((request, response) => {
        request.resume();
        response.statusCode = 500;
        response.end('internal error');
      });
      await new Promise<void>((resolve) => broken.listen(0, '127.0.0.1', resolve));
      const env = { ...remoteEnv(CI_TOKEN), NX_SELF_HOSTED_REMOTE_CACHE_SERVER: `http://127.0.0.1:${(broken.address() as AddressInfo).port}` };
      try {
        const ci = checkout();
        const output = await ci.nxOk(['build', 'image-tiny'], { env });
        expect(occurrences(output, 'vmlb  warning: the remote cache')).toBe(1);
        expect(output).toContain('it answered HTTP 500');
        expect(tasksRun(output)).toEqual(['image-tiny:base', 'image-tiny:build', ...LAYERS]);

        // The same run with the probe turned off shows what the probe prevents.
        const nxJson = JSON.parse(readFileSync(ci.path('nx.json'), 'utf8'));
        nxJson.plugins = [{ plugin: 'vmlb', options: { remoteCacheProbe: false } }];
        writeFileSync(ci.path('nx.json'), JSON.stringify(nxJson, null, 2));
        rmSync(ci.path('.nx/cache'), { recursive: true, force: true });
        const unguarded = await ci.nx(['build', 'image-tiny'], { env });
        expect(unguarded.exitCode).not.toBe(0);
        expect(unguarded.output).not.toContain('vmlb  warning');
      } finally {
        broken.closeAllConnections();
        await new Promise((resolve) => broken.close(resolve));
      }
    });
  });
});

function listFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => path.join(entry.parentPath, entry.name));
}

function occurrences(text: string, needle: string): number {
  return text.split(needle).length - 1;
}
