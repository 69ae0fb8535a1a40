import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { execa } from 'execa';
import { type RunningCacheServer, startCacheServer } from '../../../tools/cache-server/src/server';
import { readFilesFromImage } from './support/disk-read';
import { NxWorkspace, cacheHits, remoteCacheHits, tasksRun } from './support/nx-workspace';
import { type S3TestServer, startS3TestServer } from '../src/testing/s3-server';

const LAYERS = ['tiny-00_disk:build', 'tiny-10_hello:build', 'tiny-20_motd:build'];
const CHAIN = ['base', '00_disk', '10_hello', '20_motd'];

interface StoreUnderTest {
  url: string;
  env: Record<string, string>;
  /** sha256 of every blob the store holds. */
  blobs(): Promise<string[]>;
  /** Replaces a blob's bytes with others of the same length (a disk or a person damaging the store). */
  corrupt(sha256: string): Promise<void>;
  remove(sha256: string): Promise<void>;
  close(): Promise<void>;
}

async function fileStore(): Promise<StoreUnderTest> {
  const dir = mkdtempSync(path.join(tmpdir(), 'vmlb-blobs-'));
  const blobPath = (sha256: string) => path.join(dir, 'sha256', sha256);
  return {
    url: `file://${dir}`,
    env: {},
    blobs: async () => (existsSync(path.join(dir, 'sha256')) ? readdirSync(path.join(dir, 'sha256')).sort() : []),
    corrupt: async (sha256) => {
      const bytes = readFileSync(blobPath(sha256));
      bytes[bytes.length >> 1] ^= 0xff;
      rmSync(blobPath(sha256));
      writeFileSync(blobPath(sha256), bytes);
    },
    remove: async (sha256) => rmSync(blobPath(sha256)),
    close: async () => rmSync(dir, { recursive: true, force: true }),
  };
}

async function s3Store(): Promise<StoreUnderTest> {
  const server: S3TestServer = await startS3TestServer();
  const prefix = 'team/vmlb';
  return {
    url: `s3://${server.bucket}/${prefix}`,
    env: server.env,
    blobs: async () => (await server.listKeys(`${prefix}/sha256/`)).map((key) => key.split('/').pop()!).sort(),
    corrupt: async (sha256) => server.corrupt(`${prefix}/sha256/${sha256}`),
    remove: async (sha256) => server.remove(`${prefix}/sha256/${sha256}`),
    close: () => server.close(),
  };
}

/**
 * Blob mode, end to end: Nx caches and shares refs (here through
 * tools/cache-server), layer bytes move through a content-addressed store
 * (a shared folder, or an S3-protocol server on loopback), and only when
 * something needs them.
 */
describe.each([
  ['file://', fileStore],
  ['s3://', s3Store],
])('blob mode with a %s blob store', (_kind, openStore) => {
  let store: StoreUnderTest;
  let nxCacheDir: string;
  let nxCache: RunningCacheServer;
  const machines: Array<{ workspace: NxWorkspace; blobCache: string }> = [];

  /** A checkout on its own "machine": own dist/, Nx cache and blob cache; shared Nx remote cache and blob store. */
  const machine = () => {
    const workspace = new NxWorkspace({ images: ['tiny'], nxJson: { plugins: [{ plugin: 'vmlb', options: { blobStore: store.url } }] } });
    const blobCache = mkdtempSync(path.join(tmpdir(), 'vmlb-blob-cache-'));
    machines.push({ workspace, blobCache });
    const env = { ...store.env, VMLB_BLOB_CACHE: blobCache, NX_SELF_HOSTED_REMOTE_CACHE_SERVER: nxCache.url };
    return {
      workspace,
      blobCache,
      nx: (args: string[]) => workspace.nx([...args, '--output-style=static'], { env }),
      nxOk: (args: string[]) => workspace.nxOk([...args, '--output-style=static'], { env }),
      dist: (name: string) => workspace.path('dist/images/tiny', name),
      cachedBlobs: () => (existsSync(path.join(blobCache, 'sha256')) ? readdirSync(path.join(blobCache, 'sha256')).sort() : []),
      ref: (name: string) => JSON.parse(readFileSync(workspace.path('dist/images/tiny', `${name}.ref`), 'utf8')) as { sha256: string; size: number },
    };
  };

  beforeAll(async () => {
    store = await openStore();
    nxCacheDir = mkdtempSync(path.join(tmpdir(), 'vmlb-nx-remote-'));
    nxCache = await startCacheServer({ dir: nxCacheDir, port: 0, log: () => undefined });
  });

  afterAll(async () => {
    await nxCache.close();
    await store.close();
    rmSync(nxCacheDir, { recursive: true, force: true });
    for (const { workspace, blobCache } of machines) {
      workspace.remove();
      rmSync(blobCache, { recursive: true, force: true });
    }
  });

  let ci: ReturnType<typeof machine>;
  let laptop: ReturnType<typeof machine>;

  it('builds: each layer file goes to the blob store; Nx caches only refs and digests', async () => {
    ci = machine();
    const output = await ci.nxOk(['build', 'image-tiny']);
    expect(tasksRun(output)).toEqual(['image-tiny:base', 'image-tiny:build', ...LAYERS]);
    const shas = CHAIN.map((name) => ci.ref(name).sha256);
    expect(await store.blobs()).toEqual([...shas].sort());
    for (const name of CHAIN) {
      const { stdout } = await execa('sha256sum', [ci.dist(`${name}.qcow2`)]);
      expect(stdout.split(' ')[0]).toBe(ci.ref(name).sha256);
      expect(statSync(ci.dist(`${name}.qcow2`)).size).toBe(ci.ref(name).size);
    }
    // What Nx uploaded: refs, digests and the layers' manifests, never a qcow2.
    const uploaded: string[] = [];
    for (const entry of readdirSync(nxCacheDir).filter((name) => /^\d+$/.test(name))) {
      uploaded.push(...(await execa('tar', ['-tzf', path.join(nxCacheDir, entry)])).stdout.split('\n'));
    }
    // (Folder entries aside: tar lists dist/images and dist/images/tiny too.)
    expect(uploaded.filter((file) => /^dist\/.*\.\w+$/.test(file)).sort()).toEqual(
      [
        ...CHAIN.flatMap((name) => [`dist/images/tiny/${name}.digest`, `dist/images/tiny/${name}.ref`]),
        ...CHAIN.map((name) => `dist/images/tiny/${name}.manifest.json`),
        // The root listing build-layer layers end with, where the next layer's build starts.
        ...['10_hello', '20_motd'].map((name) => `dist/images/tiny/${name}.snapshot.json.gz`),
      ].sort(),
    );
    expect(await readFilesFromImage(ci.dist('image.qcow2'), ['/etc/hello'])).toEqual({ '/etc/hello': 'hello from layer 10_hello of tiny' });
  });

  it('another machine builds the image from the remote cache without downloading a byte', async () => {
    laptop = machine();
    const output = await laptop.nxOk(['build', 'image-tiny']);
    expect(remoteCacheHits(output)).toEqual(['image-tiny:base', ...LAYERS]);
    expect(laptop.cachedBlobs()).toEqual([]);
    for (const name of CHAIN) expect(existsSync(laptop.dist(`${name}.qcow2`))).toBe(false);
    expect(output).toContain('nx run image-tiny:pull fetches them');
  });

  it('pull downloads the chain, checked, bit-identical to the one built', async () => {
    const output = await laptop.nxOk(['run', 'image-tiny:pull']);
    expect(output).toMatch(/4 layer files in place .*: 0 already there, 0 linked from .*, 4 downloaded/);
    for (const name of CHAIN) {
      expect(readFileSync(laptop.dist(`${name}.qcow2`)).equals(readFileSync(ci.dist(`${name}.qcow2`)))).toBe(true);
      expect(readFileSync(laptop.dist(`${name}.digest`), 'utf8')).toBe(readFileSync(ci.dist(`${name}.digest`), 'utf8'));
    }
    await expect(execa('qemu-img', ['compare', ci.dist('image.qcow2'), laptop.dist('image.qcow2')])).resolves.toMatchObject({ exitCode: 0 });
    expect(laptop.cachedBlobs()).toEqual(CHAIN.map((name) => laptop.ref(name).sha256).sort());
    const again = await laptop.nxOk(['run', 'image-tiny:pull']);
    expect(again).toMatch(/4 layer files in place .*: 4 already there/);
  });

  it('after rm -rf dist, the chain comes back from the local caches as links, one per layer', async () => {
    rmSync(ci.workspace.path('dist'), { recursive: true });
    const output = await ci.nxOk(['build', 'image-tiny']);
    expect(cacheHits(output).length + remoteCacheHits(output).length).toBe(4);
    expect(tasksRun(output)).toEqual(['image-tiny:build']);
    const pulled = await ci.nxOk(['run', 'image-tiny:pull']);
    expect(pulled).toMatch(/: 0 already there, 4 linked from .*, 0 downloaded/);
    for (const name of CHAIN) {
      const inDist = lstatSync(ci.dist(`${name}.qcow2`));
      const inCache = statSync(path.join(ci.blobCache, 'sha256', ci.ref(name).sha256));
      expect([inDist.ino, inDist.dev]).toEqual([inCache.ino, inCache.dev]);
    }
  });

  it('a layer built on a chain of cache hits fetches its parents first', async () => {
    const fresh = machine();
    writeFileSync(fresh.workspace.path('images/tiny/20_motd/motd'), 'edited motd\n');
    const output = await fresh.nxOk(['build', 'image-tiny']);
    expect(tasksRun(output)).toEqual(['image-tiny:build', 'tiny-20_motd:build']);
    expect(output).toMatch(/downloaded 10_hello\.qcow2/);
    expect(await readFilesFromImage(fresh.dist('image.qcow2'), ['/etc/motd', '/etc/hello'])).toEqual({
      '/etc/motd': 'edited motd',
      '/etc/hello': 'hello from layer 10_hello of tiny',
    });
    expect(await store.blobs()).toContain(fresh.ref('20_motd').sha256);
  });

  it("keeps a # noshare layer's blob on its machine, and gc frees only blobs no ref names", async () => {
    const own = machine();
    const script = own.workspace.path('images/tiny/10_hello/build-layer');
    writeFileSync(script, readFileSync(script, 'utf8').replace('set -eu\n', 'set -eu\n# noshare\n'));
    await own.nxOk(['build', 'image-tiny']);
    const hello = own.ref('10_hello').sha256;
    const stored = await store.blobs();
    expect(stored).not.toContain(hello);
    expect(stored).toContain(own.ref('20_motd').sha256);

    rmSync(own.workspace.path('dist'), { recursive: true });
    const again = await own.nxOk(['build', 'image-tiny']);
    expect(again).toContain("vmlb: 10_hello is noshare: restored from this machine's layer store");
    expect(again).not.toContain('10_hello of image tiny: in no cache, building');
    expect(await own.nxOk(['run', 'image-tiny:pull'])).toMatch(/, 0 downloaded/);

    // A new 20_motd leaves the old one's blob named only by an Nx cache entry; without that entry it is garbage.
    const oldMotd = own.ref('20_motd').sha256;
    writeFileSync(own.workspace.path('images/tiny/20_motd/motd'), 'another motd\n');
    await own.nxOk(['build', 'image-tiny']);
    const chain = CHAIN.map((name) => own.ref(name).sha256);
    expect((await own.nxOk(['run', 'image-tiny:gc', '--keep=0'])).toString()).toMatch(/removed 0 /);
    for (const entry of readdirSync(own.workspace.path('.nx/cache')).filter((name) => /^\d+$/.test(name))) {
      rmSync(own.workspace.path('.nx/cache', entry), { recursive: true });
    }
    const dryRun = await own.nxOk(['run', 'image-tiny:gc', '--keep=0', '--dryRun']);
    expect(dryRun).toMatch(/would remove 1 /);
    expect(dryRun).toContain(oldMotd);
    expect(own.cachedBlobs()).toContain(oldMotd);
    expect(await own.nxOk(['run', 'image-tiny:gc', '--keep=0'])).toMatch(/removed 1 /);
    expect(own.cachedBlobs()).toEqual([...chain].sort());
  });

  it('refuses a corrupted blob, keeps nothing of it, and names the layer when a blob is gone', async () => {
    const damaged = ci.ref('10_hello').sha256;
    await store.corrupt(damaged);
    const victim = machine();
    await victim.nxOk(['build', 'image-tiny']);
    const pull = await victim.nx(['run', 'image-tiny:pull']);
    expect(pull.exitCode).not.toBe(0);
    expect(pull.output).toContain(damaged);
    expect(pull.output).toMatch(/sha256/i);
    expect(victim.cachedBlobs()).not.toContain(damaged);
    expect(existsSync(victim.dist('10_hello.qcow2'))).toBe(false);
    expect(readdirSync(victim.blobCache, { recursive: true }).filter((name) => String(name).startsWith('.tmp/'))).toEqual([]);

    await store.remove(damaged);
    const missing = await victim.nx(['run', 'image-tiny:pull']);
    expect(missing.exitCode).not.toBe(0);
    expect(missing.output).toContain(`10_hello.qcow2 (sha256 ${damaged}) is neither in this machine's blob cache`);
    expect(missing.output).toContain('nx run tiny-10_hello:build --skip-nx-cache');
  });
});
