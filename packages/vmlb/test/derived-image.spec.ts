import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { execa } from 'execa';
import { type RunningCacheServer, startCacheServer } from '../../../tools/cache-server/src/server';
import { readFilesFromImage } from './support/disk-read';
import { NxWorkspace, cacheHits, remoteCacheHits, tasksRun } from './support/nx-workspace';

/** Writes an image.json that builds on another image's layer. */
function deriveImage(workspace: NxWorkspace, folder: string, base: { image: string; layer: string }): void {
  mkdirSync(workspace.path('images', folder), { recursive: true });
  writeFileSync(workspace.path('images', folder, 'image.json'), JSON.stringify({ base }, null, 2));
}

/** `qemu-img info` of one file, without its backing chain. */
async function backingFilename(file: string): Promise<string | undefined> {
  const { stdout } = await execa('qemu-img', ['info', '--output=json', '-U', file]);
  return JSON.parse(stdout)['backing-filename'];
}

const TINY_LAYERS = ['image-tiny:base', 'tiny-00_disk:build', 'tiny-10_hello:build'];

/**
 * Images built on other images: images/tiny, `worker` on tiny's 10_hello
 * and `edge` on tiny's 20_motd. The layers of tiny are built once and
 * shared on disk; the derived images' keys carry tiny's chain digests.
 */
describe('an image built on another image’s layer', () => {
  let workspace: NxWorkspace;
  const dist = (image: string, file: string) => workspace.path('dist/images', image, file);

  beforeAll(() => {
    workspace = new NxWorkspace({ images: ['tiny'] });
    deriveImage(workspace, 'worker', { image: 'tiny', layer: '10_hello' });
    workspace.script('images/worker/10_service/build-layer', 'echo "worker on $(cat /etc/hello)" > /etc/worker');
    workspace.script('images/worker/20_config/build-layer', 'echo "threads=2" > /etc/worker.conf');
    deriveImage(workspace, 'edge', { image: 'tiny', layer: '20_motd' });
    workspace.script('images/edge/10_proxy/build-layer', 'cat /etc/motd > /etc/edge');
  });
  afterAll(() => workspace.remove());

  it('1. builds the other image’s layers up to its base layer first, and shares that file as the backing file (no copy)', async () => {
    const output = await workspace.nxOk(['build', 'image-worker']);
    expect(tasksRun(output)).toEqual([...TINY_LAYERS, 'image-worker:build', 'worker-10_service:build', 'worker-20_config:build'].sort());
    expect(await backingFilename(dist('worker', '10_service.qcow2'))).toBe('../tiny/10_hello.qcow2');
    expect(await backingFilename(dist('worker', '20_config.qcow2'))).toBe('10_service.qcow2');
    // Nothing of tiny's chain in worker's folder: no base, no copy of the layer.
    expect(
      readdirSync(dist('worker', ''))
        .filter((name) => name.endsWith('.qcow2'))
        .sort(),
    ).toEqual(['10_service.qcow2', '20_config.qcow2', 'image.qcow2']);
    expect(await readFilesFromImage(dist('worker', 'image.qcow2'), ['/etc/hello', '/etc/worker', '/etc/worker.conf'])).toEqual({
      '/etc/hello': 'hello from layer 10_hello of tiny',
      '/etc/worker': 'worker on hello from layer 10_hello of tiny',
      '/etc/worker.conf': 'threads=2',
    });
  });

  it('1b. layers lists the chain through the other image’s folder, with the hashes the build ran under; diff starts at the shared layer', async () => {
    const json = await workspace.nxOk(['run', 'image-worker:layers', '--json', '--output-style=static']);
    const rows = JSON.parse(json.slice(json.indexOf('['), json.lastIndexOf(']') + 1)) as Array<{ name: string; state: string; hash: string }>;
    expect(rows.map((row) => [row.name, row.state])).toEqual([
      ['tiny/base', 'built here'],
      ['tiny/00_disk', 'built here'],
      ['tiny/10_hello', 'built here'],
      ['10_service', 'built here'],
      ['20_config', 'built here'],
    ]);
    // "built here" means the hash the table computed is the one the build recorded; said outright for the first derived layer:
    expect(rows[3].hash).toBe(JSON.parse(readFileSync(dist('worker', '10_service.manifest.json'), 'utf8')).build.taskHash);
    const diff = await workspace.nxOk(['run', 'image-worker:diff', '--from=base', '--to=10_service', '--json', '--output-style=static']);
    const files = JSON.parse(diff.slice(diff.indexOf('{'), diff.lastIndexOf('}') + 1)).files;
    expect(files.added.map((entry: { path: string }) => entry.path)).toEqual(['/etc/worker']);
  });

  it('2. shows the edge to the other image’s layer in the project graph, and has no base import of its own', async () => {
    await workspace.nxOk(['graph', '--file=graph.json']);
    const graph = JSON.parse(readFileSync(workspace.path('graph.json'), 'utf8')).graph;
    expect(graph.dependencies['worker-10_service']).toEqual(expect.arrayContaining([expect.objectContaining({ target: 'tiny-10_hello' })]));
    expect(graph.dependencies['edge-10_proxy']).toEqual(expect.arrayContaining([expect.objectContaining({ target: 'tiny-20_motd' })]));
    expect(Object.keys(graph.nodes['image-worker'].data.targets)).not.toContain('base');
    expect(graph.nodes['image-worker'].data.metadata.description).toBe('VM image worker: built on layer 10_hello of image tiny, 2 layer(s) of its own');
  });

  it('3. nx affected: a change below the shared layer reaches every image built on it, one above it only those above', async () => {
    const affected = async (file: string) =>
      (await workspace.nxOk(['show', 'projects', '--affected', `--files=${file}`, '-t', 'build'])).trim().split('\n').sort();
    expect(await affected('images/tiny/10_hello/build-layer')).toEqual(
      ['edge-10_proxy', 'image-edge', 'image-tiny', 'image-worker', 'tiny-10_hello', 'tiny-20_motd', 'worker-10_service', 'worker-20_config'].sort(),
    );
    expect(await affected('images/tiny/20_motd/motd')).toEqual(['edge-10_proxy', 'image-edge', 'image-tiny', 'tiny-20_motd']);
  });

  it('4. a change above the shared layer: the image built on it is all cache hits, the one built on the changed layer is rebuilt', async () => {
    await workspace.nxOk(['run-many', '-t', 'build', '-p', 'image-worker', 'image-edge']);
    writeFileSync(workspace.path('images/tiny/20_motd/motd'), 'Welcome to tiny, edited.\n');
    const output = await workspace.nxOk(['run-many', '-t', 'build', '-p', 'image-worker', 'image-edge']);
    expect(cacheHits(output)).toEqual([...TINY_LAYERS, 'worker-10_service:build', 'worker-20_config:build'].sort());
    expect(tasksRun(output)).toEqual(['edge-10_proxy:build', 'image-edge:build', 'image-worker:build', 'tiny-20_motd:build']);
    expect(await readFilesFromImage(dist('edge', 'image.qcow2'), ['/etc/edge'])).toEqual({ '/etc/edge': 'Welcome to tiny, edited.' });
  });

  it('5. a change to the shared layer rebuilds every layer of the image built on it: the other chain’s digest is in their keys', async () => {
    const before = readFileSync(dist('worker', '10_service.digest'), 'utf8');
    const script = workspace.path('images/tiny/10_hello/build-layer');
    writeFileSync(script, readFileSync(script, 'utf8').replace('hello from layer', 'hi from layer'));
    const output = await workspace.nxOk(['build', 'image-worker']);
    expect(tasksRun(output)).toEqual(['image-worker:build', 'tiny-10_hello:build', 'worker-10_service:build', 'worker-20_config:build']);
    expect(cacheHits(output)).toEqual(['image-tiny:base', 'tiny-00_disk:build']);
    expect(readFileSync(dist('worker', '10_service.digest'), 'utf8')).not.toBe(before);
    expect(await readFilesFromImage(dist('worker', 'image.qcow2'), ['/etc/worker'])).toEqual({ '/etc/worker': 'worker on hi from layer 10_hello of tiny' });
  });

  it('6. flatten writes one standalone file that holds the files of both images', async () => {
    const output = await workspace.nxOk(['run', 'image-worker:flatten']);
    expect(output).toContain('vmlb: image worker exported');
    const exported = dist('worker', 'export/qcow2/worker.qcow2');
    expect(await backingFilename(exported)).toBeUndefined();
    expect(await readFilesFromImage(exported, ['/etc/hello', '/etc/worker.conf'])).toEqual({
      '/etc/hello': 'hi from layer 10_hello of tiny',
      '/etc/worker.conf': 'threads=2',
    });
  });

  it('7. after rm -rf dist, both images’ layers come back from the cache, and the chain across folders opens', async () => {
    await execa('rm', ['-rf', workspace.path('dist')]);
    const output = await workspace.nxOk(['build', 'image-worker', '--verify']);
    expect(cacheHits(output)).toEqual([...TINY_LAYERS, 'worker-10_service:build', 'worker-20_config:build'].sort());
    expect(output).toContain('vmlb: image worker: all 5 files of the chain match their digests');
    await execa('qemu-img', ['check', '-U', dist('worker', '20_config.qcow2')]);
  });

  it.each([
    [
      'an image that does not exist',
      { image: 'tinyy', layer: '10_hello' },
      "images/broken/image.json: base.image 'tinyy' names no image of this workspace (did you mean tiny?)",
    ],
    [
      'a layer the image lacks',
      { image: 'tiny', layer: '15_hello' },
      "images/broken/image.json: base.layer '15_hello' is not a layer of image tiny (images/tiny), whose layers are 00_disk, 10_hello, 20_motd. Name one of them",
    ],
    ['its own layer', { image: 'broken', layer: '10_x' }, 'images/broken/image.json: image broken is built on itself (broken → broken'],
  ])('8. refuses a base that is %s, as a project-graph error naming image.json and the fix', async (_case, base, message) => {
    deriveImage(workspace, 'broken', base);
    workspace.script('images/broken/10_x/build-layer', 'true');
    try {
      const run = await workspace.nx(['show', 'projects']);
      expect(run.exitCode).not.toBe(0);
      expect(run.output).toContain(message);
    } finally {
      await execa('rm', ['-rf', workspace.path('images/broken')]);
    }
  });

  it('9. refuses images built on each other in a circle, naming the circle in each image.json', async () => {
    deriveImage(workspace, 'ring-a', { image: 'ring-b', layer: '10_b' });
    workspace.script('images/ring-a/10_a/build-layer', 'true');
    deriveImage(workspace, 'ring-b', { image: 'ring-a', layer: '10_a' });
    workspace.script('images/ring-b/10_b/build-layer', 'true');
    try {
      const run = await workspace.nx(['show', 'projects']);
      expect(run.exitCode).not.toBe(0);
      expect(run.output).toContain('images/ring-a/image.json: image ring-a is built on itself (ring-a → ring-b → ring-a');
      expect(run.output).toContain('images/ring-b/image.json: image ring-b is built on itself (ring-b → ring-a → ring-b');
      expect(run.output).toContain('Give one of these images a base disk of its own');
      expect(existsSync(dist('ring-a', ''))).toBe(false);
    } finally {
      await execa('rm', ['-rf', workspace.path('images/ring-a'), workspace.path('images/ring-b')]);
    }
  });
});

/**
 * The same two images on two machines that share Nx's remote cache
 * (tools/cache-server on loopback), with the layer files in Nx's cache
 * (inline) or in a file:// blob store (blob mode): the second machine
 * gets both images' layers from the caches, and the chain across the
 * image folders opens there.
 */
describe.each([
  ['inline', false],
  ['blob mode', true],
])('an image built on another image’s layer, shared through a remote cache (%s)', (_mode, blobs) => {
  let nxCacheDir: string;
  let nxCache: RunningCacheServer;
  let blobStore: string;
  const machines: Array<{ workspace: NxWorkspace; blobCache: string }> = [];
  const WORKER_CHAIN = [...TINY_LAYERS, 'worker-10_service:build'];

  /** A checkout on its own "machine": own dist/, Nx cache and blob cache; shared remote cache and blob store. */
  const machine = () => {
    const nxJson = blobs ? { plugins: [{ plugin: 'vmlb', options: { blobStore: `file://${blobStore}` } }] } : {};
    const workspace = new NxWorkspace({ images: ['tiny'], nxJson });
    deriveImage(workspace, 'worker', { image: 'tiny', layer: '10_hello' });
    workspace.script('images/worker/10_service/build-layer', 'echo "worker on $(cat /etc/hello)" > /etc/worker');
    const blobCache = mkdtempSync(path.join(tmpdir(), 'vmlb-blob-cache-'));
    machines.push({ workspace, blobCache });
    const env = { VMLB_BLOB_CACHE: blobCache, NX_SELF_HOSTED_REMOTE_CACHE_SERVER: nxCache.url };
    return {
      workspace,
      nxOk: (args: string[]) => workspace.nxOk([...args, '--output-style=static'], { env }),
      dist: (image: string, file: string) => workspace.path('dist/images', image, file),
    };
  };

  beforeAll(async () => {
    nxCacheDir = mkdtempSync(path.join(tmpdir(), 'vmlb-nx-remote-'));
    blobStore = mkdtempSync(path.join(tmpdir(), 'vmlb-blobs-'));
    nxCache = await startCacheServer({ dir: nxCacheDir, port: 0, log: () => undefined });
  });
  afterAll(async () => {
    await nxCache.close();
    for (const dir of [nxCacheDir, blobStore, ...machines.map((each) => each.blobCache)]) rmSync(dir, { recursive: true, force: true });
    machines.forEach(({ workspace }) => workspace.remove());
  });

  it('a second machine gets both images’ layers from the caches, bit-identical, the chain across folders intact', async () => {
    const ci = machine();
    expect(tasksRun(await ci.nxOk(['build', 'image-worker']))).toEqual([...WORKER_CHAIN, 'image-worker:build'].sort());
    if (blobs) expect(JSON.parse(readFileSync(ci.dist('worker', '10_service.ref'), 'utf8')).parent).toBe('../tiny/10_hello.qcow2');

    const laptop = machine();
    const output = await laptop.nxOk(['build', 'image-worker']);
    expect(remoteCacheHits(output)).toEqual(WORKER_CHAIN.sort());
    expect(tasksRun(output)).toEqual(['image-worker:build']);
    if (blobs) {
      // Refs only, until something needs the bytes: pull fetches the whole chain, tiny's layers into tiny's folder.
      expect(existsSync(laptop.dist('tiny', '10_hello.qcow2'))).toBe(false);
      expect(await laptop.nxOk(['run', 'image-worker:pull'])).toMatch(/4 layer files in place .*: 0 already there, 0 linked from .*, 4 downloaded/);
    }
    for (const [image, layer] of [
      ['tiny', 'base'],
      ['tiny', '00_disk'],
      ['tiny', '10_hello'],
      ['worker', '10_service'],
    ]) {
      expect(readFileSync(laptop.dist(image, `${layer}.qcow2`)).equals(readFileSync(ci.dist(image, `${layer}.qcow2`)))).toBe(true);
    }
    expect(await backingFilename(laptop.dist('worker', '10_service.qcow2'))).toBe('../tiny/10_hello.qcow2');
    expect(await readFilesFromImage(laptop.dist('worker', 'image.qcow2'), ['/etc/worker'])).toEqual({
      '/etc/worker': 'worker on hello from layer 10_hello of tiny',
    });
  });

  it('a derived layer built on the other image’s cache hits puts that image’s chain in place first, and flatten reads both', async () => {
    const fresh = machine();
    fresh.workspace.script('images/worker/10_service/build-layer', 'echo "edited worker on $(cat /etc/hello)" > /etc/worker');
    const output = await fresh.nxOk(['build', 'image-worker']);
    expect(tasksRun(output)).toEqual(['image-worker:build', 'worker-10_service:build']);
    expect(remoteCacheHits(output)).toEqual(TINY_LAYERS);
    if (blobs) expect(output).toMatch(/downloaded 10_hello\.qcow2/);
    await fresh.nxOk(['run', 'image-worker:flatten']);
    expect(await readFilesFromImage(fresh.dist('worker', 'export/qcow2/worker.qcow2'), ['/etc/hello', '/etc/worker'])).toEqual({
      '/etc/hello': 'hello from layer 10_hello of tiny',
      '/etc/worker': 'edited worker on hello from layer 10_hello of tiny',
    });
  });
});
