import { readFileSync, writeFileSync } from 'node:fs';
import { execa } from 'execa';
import { readFilesFromImage } from './support/disk-read';
import { tearDownHost } from './support/host-teardown';
import { NxWorkspace, cacheHits, tasksRun } from './support/nx-workspace';

const CHAIN = ['base', '00_disk', '10_hello', '20_motd'];
const LAYERS = ['tiny-00_disk:build', 'tiny-10_hello:build', 'tiny-20_motd:build'];

/** image.json's qcow2Compat: every qcow2 the build writes at that level, for old hypervisors. */
describe('"qcow2Compat": "0.10"', () => {
  let workspace: NxWorkspace;
  const dist = (...parts: string[]) => workspace.path('dist/images/tiny', ...parts);
  const info = async (file: string) => JSON.parse((await execa('qemu-img', ['info', '--output=json', file])).stdout);
  const setCompat = (compat: string) => {
    const config = JSON.parse(readFileSync(workspace.path('images/tiny/image.json'), 'utf8'));
    writeFileSync(workspace.path('images/tiny/image.json'), JSON.stringify({ ...config, qcow2Compat: compat }));
  };
  const content = { '/etc/hello': 'hello from layer 10_hello of tiny', '/etc/motd': 'Welcome to tiny, built by vmlb.' };

  beforeAll(() => {
    workspace = new NxWorkspace({ images: ['tiny'] });
    setCompat('0.10');
  });
  afterEach(async () => {
    await tearDownHost(workspace);
  }, 60_000);
  afterAll(() => workspace.remove());

  it('1. writes the base and every layer as qcow2 version 2; the chain builds and reads back', async () => {
    await workspace.nxOk(['build', 'image-tiny']);
    for (const name of CHAIN) {
      const described = await info(dist(`${name}.qcow2`));
      expect({ name, compat: described['format-specific'].data.compat }).toEqual({ name, compat: '0.10' });
      await expect(execa('qemu-img', ['check', dist(`${name}.qcow2`)])).resolves.toMatchObject({ exitCode: 0 });
    }
    expect(await readFilesFromImage(dist('image.qcow2'), Object.keys(content))).toEqual(content);
  });

  it('2. exports a qcow2 at 0.10, compressed with zlib when asked to compress; both read back', async () => {
    await workspace.nxOk(['run', 'image-tiny:flatten', '--format=qcow2']);
    const plain = dist('export/qcow2/tiny.qcow2');
    expect((await info(plain))['format-specific'].data).toMatchObject({ compat: '0.10' });
    expect((await info(plain))['backing-filename']).toBeUndefined();
    expect(await readFilesFromImage(plain, Object.keys(content))).toEqual(content);

    await workspace.nxOk(['run', 'image-tiny:flatten', '--format=qcow2', '--compress']);
    expect((await info(plain))['format-specific'].data).toMatchObject({ compat: '0.10', 'compression-type': 'zlib' });
    expect(await readFilesFromImage(plain, Object.keys(content))).toEqual(content);

    await workspace.nxOk(['build', 'image-tiny', '--flatten']);
    expect((await info(dist('image.qcow2')))['format-specific'].data).toMatchObject({ compat: '0.10' });
    expect(await readFilesFromImage(dist('image.qcow2'), Object.keys(content))).toEqual(content);
  });

  it('3. rebuilds the base and every layer when the level changes, since it changes their bytes', async () => {
    setCompat('1.1');
    const output = await workspace.nxOk(['build', 'image-tiny']);
    expect(tasksRun(output)).toEqual(['image-tiny:base', 'image-tiny:build', ...LAYERS]);
    for (const name of CHAIN) expect((await info(dist(`${name}.qcow2`)))['format-specific'].data.compat).toBe('1.1');
    setCompat('0.10');
    expect(cacheHits(await workspace.nxOk(['build', 'image-tiny']))).toEqual(['image-tiny:base', ...LAYERS]);
    expect((await info(dist('20_motd.qcow2')))['format-specific'].data.compat).toBe('0.10');
  });
});
