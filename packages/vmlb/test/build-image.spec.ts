import { appendFileSync, existsSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { execa } from 'execa';
import { fileTimesInImage, readFilesFromImage } from './support/disk-read';
import { flipByte } from '../src/testing/file-damage';
import { NxWorkspace, cacheHits, tasksRun } from './support/nx-workspace';

const LAYERS = ['tiny-00_disk:build', 'tiny-10_hello:build', 'tiny-20_motd:build'];
const CHAIN_FILES = ['base', '00_disk', '10_hello', '20_motd'];

/**
 * The caching semantics users rely on, on a real image built from an empty
 * disk: Nx's cache is the layer cache.
 */
describe('nx build image-tiny', () => {
  let workspace: NxWorkspace;
  const dist = (file: string) => workspace.path('dist/images/tiny', file);
  const snapshot = () =>
    Object.fromEntries(
      CHAIN_FILES.flatMap((name) => [
        [`${name}.qcow2`, readFileSync(dist(`${name}.qcow2`))],
        [`${name}.digest`, readFileSync(dist(`${name}.digest`), 'utf8')],
      ]),
    );
  let firstBuild: Record<string, Buffer | string>;

  beforeAll(() => {
    workspace = new NxWorkspace({ images: ['tiny'] });
  });
  afterAll(() => workspace.remove());

  it('1. builds every layer into a relative chain whose files hold what the scripts wrote', async () => {
    const output = await workspace.nxOk(['build', 'image-tiny']);
    expect(tasksRun(output)).toEqual(['image-tiny:base', 'image-tiny:build', ...LAYERS]);

    expect(readlinkSync(dist('image.qcow2'))).toBe('20_motd.qcow2');
    for (const [layer, parent] of [
      ['00_disk', 'base'],
      ['10_hello', '00_disk'],
      ['20_motd', '10_hello'],
    ]) {
      const { stdout } = await execa('qemu-img', ['info', '--output=json', dist(`${layer}.qcow2`)]);
      expect(JSON.parse(stdout)['backing-filename']).toBe(`${parent}.qcow2`);
    }
    for (const name of CHAIN_FILES) {
      await expect(execa('qemu-img', ['check', dist(`${name}.qcow2`)])).resolves.toMatchObject({ exitCode: 0 });
      expect(readFileSync(dist(`${name}.digest`), 'utf8')).toMatch(/^[0-9a-f]{64}\n$/);
    }
    expect(await readFilesFromImage(dist('image.qcow2'), ['/etc/hello', '/etc/motd', '/etc/hostname'])).toEqual({
      '/etc/hello': 'hello from layer 10_hello of tiny',
      '/etc/motd': 'Welcome to tiny, built by vmlb.',
      '/etc/hostname': 'tiny',
    });
    // 10_hello's manifest lists every folder of the root (its parent, a
    // modify-disk layer, left none), and its scripts run busybox: an access
    // time that moved would be written into the layer, different each build.
    expect(await fileTimesInImage(dist('image.qcow2'), '/bin')).toEqual(await fileTimesInImage(dist('00_disk.qcow2'), '/bin'));
    firstBuild = snapshot();

    // Each layer's manifest: what its script changed in the root filesystem.
    const manifest = (layer: string) => JSON.parse(readFileSync(dist(`${layer}.manifest.json`), 'utf8'));
    expect(manifest('00_disk')).toEqual({
      kind: 'modify-disk',
      version: 1,
      files: null,
      build: expect.objectContaining({ taskHash: expect.stringMatching(/^\d+$/), seconds: expect.any(Number), virtualSize: 64 * 1024 * 1024 }),
    });
    const hello = manifest('10_hello');
    expect(hello).toMatchObject({ kind: 'build-layer', version: 1 });
    // Only what the script did: the mount points the chroot needed (this image has no /run) are gone again.
    expect(hello.files.added).toEqual([{ path: '/etc/hello', size: 34, type: 'file' }]);
    expect(hello.files.removed).toEqual([]);
    // (A folder whose entries changed is not itself listed as modified.)
    expect(hello.files.modified).toEqual([]);
    expect(hello.packages).toBeUndefined();
    expect(manifest('20_motd').files.added).toEqual([{ path: '/etc/motd', size: 32, type: 'file' }]);
  });

  it('2. takes every layer from the cache on a second run', async () => {
    const output = await workspace.nxOk(['build', 'image-tiny']);
    expect(cacheHits(output)).toEqual(['image-tiny:base', ...LAYERS]);
    expect(tasksRun(output)).toEqual(['image-tiny:build']);
  });

  it('3. rebuilds only an edited layer and the layers above it', async () => {
    writeFileSync(workspace.path('images/tiny/10_hello/build-layer'), '#!/bin/sh\nset -eu\necho "edited hello" > /etc/hello\n');
    const output = await workspace.nxOk(['build', 'image-tiny']);
    expect(cacheHits(output)).toEqual(['image-tiny:base', 'tiny-00_disk:build']);
    expect(tasksRun(output)).toEqual(['image-tiny:build', 'tiny-10_hello:build', 'tiny-20_motd:build']);
    expect(await readFilesFromImage(dist('image.qcow2'), ['/etc/hello', '/etc/motd'])).toEqual({
      '/etc/hello': 'edited hello',
      '/etc/motd': 'Welcome to tiny, built by vmlb.',
    });
  });

  it('4. is all cache hits again after the edit is reverted, byte-identical to the first build', async () => {
    writeFileSync(workspace.path('images/tiny/10_hello/build-layer'), readFileSync(require.resolve('../../../images/tiny/10_hello/build-layer')));
    const output = await workspace.nxOk(['build', 'image-tiny']);
    expect(cacheHits(output)).toEqual(['image-tiny:base', ...LAYERS]);
    expect(snapshot()).toEqual(firstBuild);
  });

  it('6. restores a deleted dist/ from the cache, bit-identical, with a chain that resolves', async () => {
    rmSync(workspace.path('dist'), { recursive: true });
    const output = await workspace.nxOk(['build', 'image-tiny']);
    expect(cacheHits(output)).toEqual(['image-tiny:base', ...LAYERS]);
    expect(snapshot()).toEqual(firstBuild);
    const { stdout } = await execa('qemu-img', ['info', '--backing-chain', '--output=json', dist('image.qcow2')]);
    expect(JSON.parse(stdout).map((info: { filename: string }) => info.filename.split('/').pop())).toEqual(
      ['image.qcow2', '10_hello.qcow2', '00_disk.qcow2', 'base.qcow2'].map((name, index) => (index === 0 ? 'image.qcow2' : name)),
    );
  });

  it('7. writes a standalone image.qcow2 with --flatten, with the same content as the chain', async () => {
    await workspace.nxOk(['build', 'image-tiny', '--flatten']);
    const { stdout } = await execa('qemu-img', ['info', '--output=json', dist('image.qcow2')]);
    expect(JSON.parse(stdout)['backing-filename']).toBeUndefined();
    await expect(execa('qemu-img', ['compare', dist('image.qcow2'), dist('20_motd.qcow2')])).resolves.toMatchObject({ exitCode: 0 });
  });

  describe('5. nocache layers', () => {
    it('rebuild every run; a nocache modify-disk that only reads leaves identical bytes, so the layer above is a hit', async () => {
      workspace.script('images/tiny/30_check/modify-disk', '# nocache', 'echo "checking $3"', 'sfdisk --dump "$3" > /dev/null');
      workspace.script('images/tiny/40_stamp/build-layer', 'echo stamped > /etc/stamp');
      await workspace.nxOk(['build', 'image-tiny']);
      const stamped = readFileSync(workspace.path('dist/images/tiny/40_stamp.qcow2'));
      const output = await workspace.nxOk(['build', 'image-tiny']);
      expect(tasksRun(output)).toContain('tiny-30_check:build');
      expect(cacheHits(output)).toContain('tiny-40_stamp:build');
      expect(readFileSync(workspace.path('dist/images/tiny/40_stamp.qcow2'))).toEqual(stamped);
    });

    it('a nocache build-layer that writes files changes ext4 metadata, so the layers above rebuild', async () => {
      rmSync(workspace.path('images/tiny/30_check'), { recursive: true });
      workspace.script('images/tiny/30_check/build-layer', '# nocache', 'date > /etc/built-at');
      await workspace.nxOk(['build', 'image-tiny']);
      const output = await workspace.nxOk(['build', 'image-tiny']);
      expect(tasksRun(output)).toEqual(expect.arrayContaining(['tiny-30_check:build', 'tiny-40_stamp:build']));
      rmSync(workspace.path('images/tiny/30_check'), { recursive: true });
      rmSync(workspace.path('images/tiny/40_stamp'), { recursive: true });
    });
  });

  it('9. --verify checks every layer file against its digest; a layer restored damaged from the cache is named, with the entry to remove', async () => {
    const verified = await workspace.nxOk(['build', 'image-tiny', '--verify']);
    expect(verified).toContain('vmlb: image tiny: all 4 files of the chain match their digests');

    // Damage 10_hello's qcow2 in Nx's cache, in its data (past the header, so
    // qemu opens it as before); a fresh dist/ gets it back damaged.
    const taskHash = JSON.parse(readFileSync(dist('10_hello.manifest.json'), 'utf8')).build.taskHash;
    const entry = workspace.path('.nx/cache', taskHash);
    const cachedLayer = path.join(entry, 'dist/images/tiny/10_hello.qcow2');
    flipByte(cachedLayer, statSync(cachedLayer).size - 4096);
    rmSync(workspace.path('dist'), { recursive: true });

    const restoredDamaged = await workspace.nx(['build', 'image-tiny', '--verify']);
    expect(restoredDamaged.exitCode).not.toBe(0);
    expect(cacheHits(restoredDamaged.output)).toEqual(['image-tiny:base', ...LAYERS]);
    expect(restoredDamaged.output).toMatch(
      /Image tiny: dist\/images\/tiny\/10_hello\.qcow2 does not match its digest: dist\/images\/tiny\/10_hello\.digest says [0-9a-f]{12}, its bytes on top of 00_disk\.qcow2 give [0-9a-f]{12}\. The file was damaged on disk, or restored damaged from a cache\./,
    );
    expect(restoredDamaged.output).toContain(`rm -rf ${entry}, then nx run image-tiny:build --verify`);
    // Nothing is linked to a chain that failed.
    expect(existsSync(dist('image.qcow2'))).toBe(false);
    // Without --verify the same chain is linked as it is: that is what the option is for.
    const unverified = await workspace.nxOk(['build', 'image-tiny']);
    expect(unverified).not.toContain('match their digests');

    // The fix the message names: the entry goes, the layer and the one above it are built again.
    rmSync(entry, { recursive: true });
    const fixed = await workspace.nxOk(['build', 'image-tiny', '--verify']);
    expect(cacheHits(fixed)).toEqual(['image-tiny:base', 'tiny-00_disk:build']);
    expect(tasksRun(fixed)).toEqual(expect.arrayContaining(['tiny-10_hello:build', 'tiny-20_motd:build']));
    expect(fixed).toContain('vmlb: image tiny: all 4 files of the chain match their digests');
    expect(await readFilesFromImage(dist('image.qcow2'), ['/etc/hello', '/etc/motd'])).toEqual({
      '/etc/hello': 'hello from layer 10_hello of tiny',
      '/etc/motd': 'Welcome to tiny, built by vmlb.',
    });
  }, 180_000);
});

describe('8. two images built in parallel', () => {
  it('do not interfere', async () => {
    const workspace = new NxWorkspace({ images: ['tiny'] });
    try {
      const { cpSync } = await import('node:fs');
      cpSync(workspace.path('images/tiny'), workspace.path('images/tiny2'), { recursive: true });
      appendFileSync(workspace.path('images/tiny2/20_motd/motd'), 'second image\n');
      await workspace.nxOk(['run-many', '-t', 'build', '--projects=image-tiny,image-tiny2', '--parallel=2']);
      const [first, second] = await Promise.all([
        readFilesFromImage(workspace.path('dist/images/tiny/image.qcow2'), ['/etc/motd']),
        readFilesFromImage(workspace.path('dist/images/tiny2/image.qcow2'), ['/etc/motd']),
      ]);
      expect(first['/etc/motd']).toBe('Welcome to tiny, built by vmlb.');
      expect(second['/etc/motd']).toBe('Welcome to tiny, built by vmlb.\nsecond image');
      expect(existsSync(workspace.path('dist/images/tiny/.vmlb'))).toBe(false);
    } finally {
      workspace.remove();
    }
  });
});
