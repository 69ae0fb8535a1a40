import { existsSync, readdirSync, readlinkSync } from 'node:fs';
import { execa } from 'execa';
import { sha256File } from '../src/lib/cache-identity/digest';
import { pathsInImage, readFilesFromImage } from './support/disk-read';
import { describeLeftovers, findLeftovers } from './support/host-state';
import { NxWorkspace, cacheHits, tasksRun } from './support/nx-workspace';

const TINY_FILES = ['/etc/hello', '/etc/motd'];
/** 20_motd's script writes /etc/motd: not in the image up to 10_hello. */
const UP_TO_10_HELLO = { '/etc/hello': true, '/etc/motd': false };

/** --upTo: the image as it is up to one of its layers, built, linked, exported and booted. */
describe('--upTo on images/tiny', () => {
  let workspace: NxWorkspace;
  const dist = (...parts: string[]) => workspace.path('dist/images/tiny', ...parts);

  beforeAll(() => {
    workspace = new NxWorkspace({ images: ['tiny'] });
  });
  afterAll(async () => {
    const leftovers = describeLeftovers(await findLeftovers(workspace.root));
    workspace.remove();
    if (leftovers) throw new Error(`leftovers:\n${leftovers}`);
  });

  it('nx build image-tiny --upTo 10_hello --exclude-task-dependencies builds 00_disk and 10_hello only and links image.qcow2 to 10_hello', async () => {
    const output = await workspace.nxOk(['build', 'image-tiny', '--upTo', '10_hello', '--exclude-task-dependencies']);
    expect(output).toContain('vmlb: image tiny up to 10_hello: nx run tiny-10_hello:build (the layers above 10_hello are not built)');
    expect(tasksRun(output)).toEqual(['image-tiny:base', 'tiny-00_disk:build', 'tiny-10_hello:build']);
    expect(output).not.toContain('tiny-20_motd');
    expect(existsSync(dist('20_motd.qcow2'))).toBe(false);
    expect(readlinkSync(dist('image.qcow2'))).toBe('10_hello.qcow2');
    expect(await pathsInImage(dist('image.qcow2'), TINY_FILES)).toEqual(UP_TO_10_HELLO);
    expect(await readFilesFromImage(dist('image.qcow2'), ['/etc/hello'])).toEqual({ '/etc/hello': 'hello from layer 10_hello of tiny' });
  });

  it('without --exclude-task-dependencies Nx runs the whole chain first; --upTo takes the layer number, and says so', async () => {
    const output = await workspace.nxOk(['build', 'image-tiny', '--upTo', '10']);
    expect(tasksRun(output)).toContain('tiny-20_motd:build');
    expect(output).toContain('vmlb: image tiny up to 10_hello: Nx also ran 20_motd (built, or restored from a cache)');
    expect(readlinkSync(dist('image.qcow2'))).toBe('10_hello.qcow2');
    await workspace.nxOk(['build', 'image-tiny']);
    expect(readlinkSync(dist('image.qcow2'))).toBe('20_motd.qcow2');
  });

  it('refuses a layer the image does not have, listing its layers', async () => {
    const run = await workspace.nx(['build', 'image-tiny', '--upTo', '30_app', '--exclude-task-dependencies']);
    expect(run.exitCode).not.toBe(0);
    expect(run.output).toContain(
      "--upTo '30_app' is not a layer of image tiny (images/tiny); give a layer folder or its number: base, 00_disk, 10_hello, 20_motd.",
    );
  });

  it('flatten --upTo exports the image up to that layer, cached apart from the export of the whole image', async () => {
    const output = await workspace.nxOk(['run', 'image-tiny:flatten', '--upTo', '10_hello']);
    const middle = dist('export/qcow2/10_hello/tiny.qcow2');
    expect(output).toContain('vmlb: exporting image tiny as qcow2 to dist/images/tiny/export/qcow2/10_hello/tiny.qcow2');
    expect(await pathsInImage(middle, TINY_FILES)).toEqual(UP_TO_10_HELLO);
    await expect(execa('qemu-img', ['compare', dist('10_hello.qcow2'), middle])).resolves.toMatchObject({ exitCode: 0 });
    const middleSha = await sha256File(middle);

    await workspace.nxOk(['run', 'image-tiny:flatten']);
    const whole = dist('export/qcow2/tiny.qcow2');
    expect(await readFilesFromImage(whole, TINY_FILES)).toEqual({
      '/etc/hello': 'hello from layer 10_hello of tiny',
      '/etc/motd': 'Welcome to tiny, built by vmlb.',
    });
    const wholeSha = await sha256File(whole);

    // Each from the cache under its own key, leaving the other where it is.
    const again = await workspace.nxOk(['run', 'image-tiny:flatten', '--upTo=10_hello']);
    expect(cacheHits(again)).toContain('image-tiny:flatten');
    const wholeAgain = await workspace.nxOk(['run', 'image-tiny:flatten']);
    expect(cacheHits(wholeAgain)).toContain('image-tiny:flatten');
    expect([await sha256File(middle), await sha256File(whole)]).toEqual([middleSha, wholeSha]);
    expect(readdirSync(dist('export/qcow2')).sort()).toEqual(['10_hello', 'tiny.qcow2', 'tiny.qcow2.sha256']);
  });

  it('flatten refuses to run without its dependencies: its cache key would name no chain', async () => {
    const run = await workspace.nx(['run', 'image-tiny:flatten', '--upTo', '10_hello', '--format=raw', '--exclude-task-dependencies']);
    expect(run.exitCode).not.toBe(0);
    expect(run.output).toContain('nx run image-tiny:flatten ran without the tasks it depends on (--exclude-task-dependencies?)');
    expect(existsSync(dist('export/raw'))).toBe(false);
  });
});

/** test-boot --upTo on images/tiny-boot, with a layer above that would keep it from booting. */
describe('test-boot --upTo on images/tiny-boot', () => {
  let workspace: NxWorkspace;
  const dist = (...parts: string[]) => workspace.path('dist/images/tiny-boot', ...parts);

  beforeAll(() => {
    workspace = new NxWorkspace({ images: ['tiny-boot'] });
    // An init that never says what test-boot waits for.
    workspace.script('images/tiny-boot/30_broken/build-layer', "printf '#!/bin/sh\\necho broken init\\npoweroff -f\\n' > /sbin/init");
  });
  afterAll(async () => {
    const leftovers = describeLeftovers(await findLeftovers(workspace.root));
    workspace.remove();
    if (leftovers) throw new Error(`leftovers:\n${leftovers}`);
  });

  it('boots the chain up to 20_init and builds no layer above it', async () => {
    const output = await workspace.nxOk(['run', 'image-tiny-boot:test-boot', '--check', '--upTo', '20_init', '--exclude-task-dependencies']);
    expect(tasksRun(output)).toEqual(['image-tiny-boot:base', 'tiny-boot-00_disk:build', 'tiny-boot-10_kernel:build', 'tiny-boot-20_init:build']);
    expect(output).toContain('vmlb: booting dist/images/tiny-boot/20_init.qcow2');
    expect(output).toMatch(/vmlb: image tiny-boot booted: \/tiny-boot: init reached\/ appeared after/);
    expect(existsSync(dist('30_broken.qcow2'))).toBe(false);
  });
});
