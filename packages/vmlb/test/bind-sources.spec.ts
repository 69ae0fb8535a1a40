import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { readFilesFromImage } from './support/disk-read';
import { describeLeftovers, findLeftovers } from './support/host-state';
import { tearDownHost } from './support/host-teardown';
import { NxWorkspace, cacheHits, tasksRun } from './support/nx-workspace';

const BELOW = ['image-tiny:base', 'tiny-00_disk:build', 'tiny-10_hello:build', 'tiny-20_motd:build'];

/**
 * A layer that binds files from outside its folder: a folder beside the
 * layer folders (`../common`), a folder and a file elsewhere in the
 * workspace. Their files are part of the layer's key: an edit rebuilds
 * that layer and the ones above it, and no other.
 */
describe('bind sources outside the layer folder', () => {
  let workspace: NxWorkspace;
  const top = () => workspace.path('dist/images/tiny/image.qcow2');
  const write = (file: string, text: string) => {
    mkdirSync(path.dirname(workspace.path(file)), { recursive: true });
    writeFileSync(workspace.path(file), text);
  };
  const build = async () => workspace.nxOk(['build', 'image-tiny']);
  const expectOnlyBindingLayerRebuilt = (output: string) => {
    expect(tasksRun(output)).toEqual(['image-tiny:build', 'tiny-30_common:build', 'tiny-40_top:build']);
    expect(cacheHits(output)).toEqual(BELOW);
  };

  beforeAll(() => {
    workspace = new NxWorkspace({ images: ['tiny'] });
    write('images/tiny/common/greeting.txt', 'hello from common');
    write('libs/shared/banner.txt', 'shared banner v1');
    write('libs/app.conf', 'conf v1');
    write('libs/unrelated.txt', 'not bound by any layer');
    workspace.script(
      'images/tiny/30_common/build-layer',
      '# chroot-bind-mount ../common /opt/common',
      '# chroot-bind-mount ../../../libs/shared /run/shared (a folder elsewhere in the workspace)',
      '# chroot-bind-mount ../../../libs/app.conf /run/app.conf',
      'cat /opt/common/*.txt > /etc/common',
      'cat /run/shared/banner.txt > /etc/banner',
      'cat /run/app.conf > /etc/app.conf',
    );
    workspace.script('images/tiny/40_top/build-layer', 'echo top > /etc/top');
  });
  afterEach(async () => {
    await tearDownHost(workspace);
  }, 60_000);
  afterAll(() => workspace.remove());

  it('1. builds the layer with the files read back from the image', async () => {
    const output = await build();
    expect(tasksRun(output)).toEqual([...BELOW, 'image-tiny:build', 'tiny-30_common:build', 'tiny-40_top:build'].sort());
    expect(await readFilesFromImage(workspace.path('dist/images/tiny/30_common.qcow2'), ['/etc/common', '/etc/banner', '/etc/app.conf'])).toEqual({
      '/etc/common': 'hello from common',
      '/etc/banner': 'shared banner v1',
      '/etc/app.conf': 'conf v1',
    });
    expect(await workspace.nxOk(['show', 'project', 'tiny-30_common', '--json'])).toContain('{workspaceRoot}/images/tiny/common/**/*');
  });

  it('2. rebuilds exactly that layer and the ones above when a file in ../common changes, or one is added', async () => {
    write('images/tiny/common/greeting.txt', 'hello again');
    expectOnlyBindingLayerRebuilt(await build());
    write('images/tiny/common/more.txt', ', and more');
    expectOnlyBindingLayerRebuilt(await build());
    expect(await readFilesFromImage(top(), ['/etc/common', '/etc/top'])).toEqual({ '/etc/common': 'hello again, and more', '/etc/top': 'top' });
    // The layers listing hashes the bind sources as the build did: each layer is the one built here.
    const listed = await workspace.nxOk(['run', 'image-tiny:layers', '--json']);
    const rows = JSON.parse(listed.slice(listed.indexOf('\n['), listed.lastIndexOf(']') + 1)) as Array<{ name: string; hash: string; state: string }>;
    for (const row of rows) {
      const manifest = JSON.parse(readFileSync(workspace.path(`dist/images/tiny/${row.name}.manifest.json`), 'utf8'));
      expect([row.name, row.hash, row.state]).toEqual([row.name, manifest.build.taskHash, 'built here']);
    }
  });

  it('3. rebuilds it when the folder or the file elsewhere in the workspace changes; not when another file there does', async () => {
    write('libs/shared/banner.txt', 'shared banner v2');
    expectOnlyBindingLayerRebuilt(await build());
    write('libs/app.conf', 'conf v2');
    expectOnlyBindingLayerRebuilt(await build());
    expect(await readFilesFromImage(top(), ['/etc/banner', '/etc/app.conf'])).toEqual({ '/etc/banner': 'shared banner v2', '/etc/app.conf': 'conf v2' });

    write('libs/unrelated.txt', 'changed');
    const output = await build();
    expect(tasksRun(output)).toEqual(['image-tiny:build']);
    expect(cacheHits(output)).toEqual([...BELOW, 'tiny-30_common:build', 'tiny-40_top:build'].sort());
  });

  it('4. lists as affected by an edit of a bound file the layer that binds it, those above and the image; not those below', async () => {
    await workspace.commitAll();
    write('libs/app.conf', 'conf v3');
    const affected = (await workspace.nxOk(['show', 'projects', '--affected', '--base=HEAD'])).split('\n').filter(Boolean).sort();
    expect(affected).toEqual(['image-tiny', 'tiny-30_common', 'tiny-40_top']);
    write('libs/app.conf', 'conf v2');
  });

  it('5. binds a folder read-write with # chroot-bind-mount-rw: the script writes to the host, not the layer, and its content is not in the key', async () => {
    workspace.script(
      'images/tiny/50_cache/build-layer',
      '# chroot-bind-mount-rw ../cache /var/cache/downloads',
      'echo "fetched once" > /var/cache/downloads/package.deb',
      'ls /var/cache/downloads > /etc/cache-listing',
    );
    const first = await build();
    expect(tasksRun(first)).toEqual(['image-tiny:build', 'tiny-50_cache:build']);
    // Made for the build, and written by the script on the host.
    expect(readFileSync(workspace.path('images/tiny/cache/package.deb'), 'utf8')).toBe('fetched once\n');
    expect(await readFilesFromImage(top(), ['/etc/cache-listing', '/var/cache/downloads/package.deb'])).toEqual({
      '/etc/cache-listing': 'package.deb',
      '/var/cache/downloads/package.deb': '',
    });
    write('images/tiny/cache/other.deb', 'another download');
    const second = await build();
    expect(tasksRun(second)).toEqual(['image-tiny:build']);
    expect(cacheHits(second)).toContain('tiny-50_cache:build');
  });

  it('6. refuses a source outside the workspace, and a symlink in the workspace that leads out of it, naming the script, the hint and the fix', async () => {
    rmSync(workspace.path('images/tiny/50_cache'), { recursive: true });
    workspace.script('images/tiny/50_out/build-layer', '# chroot-bind-mount ../../../../etc /host-etc', 'touch /host-etc/escaped');
    const refused = await workspace.nx(['build', 'image-tiny']);
    expect(refused.exitCode).not.toBe(0);
    expect(refused.output).toContain(
      "images/tiny/50_out/build-layer:3: bind-mount source '../../../../etc' leads out of the workspace; bind sources are paths inside the workspace, relative to the layer folder",
    );

    const outside = mkdtempSync(path.join(tmpdir(), 'vmlb-outside-'));
    try {
      symlinkSync(outside, workspace.path('libs/escape'));
      workspace.script('images/tiny/50_out/build-layer', '# chroot-bind-mount ../../../libs/escape /data', 'touch /data/escaped');
      const run = await workspace.nx(['build', 'image-tiny']);
      expect(run.exitCode).not.toBe(0);
      expect(run.output).toContain(
        `images/tiny/50_out/build-layer: # chroot-bind-mount ../../../libs/escape /data: bind source '../../../libs/escape' resolves to ${outside}, outside the workspace ${workspace.root}; ` +
          "bind sources must stay inside the workspace, whose files make the layer's cache key. " +
          'Copy what the layer needs into the workspace (beside the layer folders, e.g. ../common) instead of linking to it.',
      );
      expect(run.output).not.toContain('50_out of image tiny: in no cache, building');
      expect(readdirSync(outside)).toEqual([]);
      expect(existsSync(workspace.path('dist/images/tiny/50_out.qcow2'))).toBe(false);
      expect(describeLeftovers(await findLeftovers(workspace.root))).toBe('');
    } finally {
      rmSync(workspace.path('libs/escape'), { force: true });
      rmSync(outside, { recursive: true, force: true });
    }
  });
});
