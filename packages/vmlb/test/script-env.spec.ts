import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { readFilesFromImage } from './support/disk-read';
import { tearDownHost } from './support/host-teardown';
import { NxWorkspace, cacheHits, tasksRun } from './support/nx-workspace';

const LAYERS = ['tiny-00_disk:build', 'tiny-10_hello:build', 'tiny-20_motd:build'];

/**
 * image.json's `env`: variables of the build's environment that reach the
 * layer scripts (modify-disk on the host, build-layer in the chroot), each
 * in the layers' key or not.
 */
describe('variables image.json passes to the layer scripts', () => {
  let workspace: NxWorkspace;
  const imageJson = (releaseDefault: string) =>
    JSON.stringify({
      base: { empty: '64M' },
      env: {
        VMLB_TEST_MIRROR: { key: false, description: 'where downloads come from: not in the key' },
        VMLB_TEST_RELEASE: { key: true, default: releaseDefault },
      },
    });
  const build = (env: Record<string, string> = {}) => workspace.nxOk(['build', 'image-tiny'], { env });
  /** What each script saw, as it wrote it into the image. */
  const seen = async () => {
    const files = await readFilesFromImage(workspace.path('dist/images/tiny/image.qcow2'), ['/etc/disk-env', '/etc/layer-env']);
    return { modifyDisk: files['/etc/disk-env'], buildLayer: files['/etc/layer-env'] };
  };

  beforeAll(() => {
    workspace = new NxWorkspace({ images: ['tiny'] });
    writeFileSync(workspace.path('images/tiny/image.json'), imageJson('bookworm'));
    const report = 'mirror=${VMLB_TEST_MIRROR:-unset} release=${VMLB_TEST_RELEASE:-unset} undeclared=${VMLB_TEST_UNDECLARED:-unset}';
    // 00_disk has the root filesystem mounted at $root until it exits.
    appendFileSync(workspace.path('images/tiny/00_disk/modify-disk'), `echo "${report}" > "$root/etc/disk-env"\n`);
    appendFileSync(workspace.path('images/tiny/10_hello/build-layer'), `echo "${report}" > /etc/layer-env\n`);
  });
  afterEach(async () => {
    await tearDownHost(workspace);
  }, 60_000);
  afterAll(() => workspace.remove());

  it('1. passes the declared variables, with their defaults, to modify-disk and build-layer; nothing undeclared', async () => {
    const output = await build({ VMLB_TEST_MIRROR: 'http://mirror.one/debian', VMLB_TEST_UNDECLARED: 'leaked' });
    expect(tasksRun(output)).toEqual(['image-tiny:base', 'image-tiny:build', ...LAYERS]);
    expect(await seen()).toEqual({
      modifyDisk: 'mirror=http://mirror.one/debian release=bookworm undeclared=unset',
      buildLayer: 'mirror=http://mirror.one/debian release=bookworm undeclared=unset',
    });
  });

  it('2. takes every layer from the cache when only a variable declared with key: false changes', async () => {
    const output = await build({ VMLB_TEST_MIRROR: 'http://mirror.two/debian' });
    expect(tasksRun(output)).toEqual(['image-tiny:build']);
    expect(cacheHits(output)).toEqual(['image-tiny:base', ...LAYERS]);
  });

  it('3. rebuilds every layer, not the base, when a variable declared with key: true changes', async () => {
    const output = await build({ VMLB_TEST_RELEASE: 'trixie' });
    expect(tasksRun(output)).toEqual(['image-tiny:build', ...LAYERS]);
    expect(cacheHits(output)).toEqual(['image-tiny:base']);
    expect(await seen()).toEqual({ modifyDisk: 'mirror=unset release=trixie undeclared=unset', buildLayer: 'mirror=unset release=trixie undeclared=unset' });
    // The layers listing hashes the variables as the build did: each layer is the one built here.
    const listed = await workspace.nxOk(['run', 'image-tiny:layers', '--json'], { env: { VMLB_TEST_RELEASE: 'trixie' } });
    const rows = JSON.parse(listed.slice(listed.indexOf('\n['), listed.lastIndexOf(']') + 1)) as Array<{ name: string; hash: string; state: string }>;
    for (const row of rows) {
      const manifest = JSON.parse(readFileSync(workspace.path(`dist/images/tiny/${row.name}.manifest.json`), 'utf8'));
      expect([row.name, row.hash, row.state]).toEqual([row.name, manifest.build.taskHash, 'built here']);
    }
    // Back to the default: the first build's layers again.
    expect(cacheHits(await build())).toEqual(['image-tiny:base', ...LAYERS]);
  });

  it("4. rebuilds every layer when a key: true variable's default changes and the environment leaves it unset", async () => {
    writeFileSync(workspace.path('images/tiny/image.json'), imageJson('sid'));
    const output = await build();
    expect(tasksRun(output)).toEqual(['image-tiny:build', ...LAYERS]);
    expect((await seen()).buildLayer).toBe('mirror=unset release=sid undeclared=unset');
  });
});
