import { existsSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { TempWorkspace } from '../../testing/temp-workspace';
import { bindSource, checkBindSources } from './bind-sources';
import { blockServiceStarts, unlinkedPathUnder } from './image-root-edits';
import { KEPT_CAPABILITIES, droppedCapabilities } from './sandbox-capabilities';

describe('bind-mount sources stay inside the workspace', () => {
  let workspace: TempWorkspace;
  let elsewhere: TempWorkspace;
  let root: string;
  let layerDir: string;
  let outside: string;
  const roots = () => ({ workspaceRoot: root, layerDir });
  beforeEach(() => {
    workspace = new TempWorkspace();
    elsewhere = new TempWorkspace();
    workspace.write('images/x/10_a/files/a.txt', 'a');
    workspace.write('images/x/common/c.txt', 'c');
    workspace.write('libs/shared/s.txt', 's');
    elsewhere.write('outside/b.txt', 'b');
    root = realpathSync(workspace.root);
    layerDir = path.join(root, 'images/x/10_a');
    outside = realpathSync(elsewhere.path('outside'));
  });
  afterEach(() => {
    workspace.remove();
    elsewhere.remove();
  });

  it('accepts a folder or file of the layer folder, also through a symlink that stays inside', () => {
    symlinkSync('files', path.join(layerDir, 'same'));
    expect(bindSource(roots(), { source: 'files' })).toBe(path.join(layerDir, 'files'));
    expect(bindSource(roots(), { source: 'same/a.txt' })).toBe(path.join(layerDir, 'files/a.txt'));
    expect(() => checkBindSources(roots(), [{ source: 'same', target: '/opt' }], 'images/x/10_a/build-layer')).not.toThrow();
  });

  it('accepts a folder beside the layer folder and a file elsewhere in the workspace, named by their paths', () => {
    expect(bindSource(roots(), { source: '../common' })).toBe(path.join(root, 'images/x/common'));
    expect(bindSource(roots(), { source: '../../../libs/shared/s.txt' })).toBe(path.join(root, 'libs/shared/s.txt'));
  });

  it('refuses a symlink out of the layer folder that stays in the workspace, naming the real path to write instead', () => {
    symlinkSync('../common', path.join(layerDir, 'common'));
    symlinkSync('../../libs/shared', path.join(root, 'images/x/shared'));
    expect(() => checkBindSources(roots(), [{ source: 'common', target: '/opt/common' }], 'images/x/10_a/build-layer')).toThrow(
      `images/x/10_a/build-layer: # chroot-bind-mount common /opt/common: chroot-bind-mount source 'common' leads through a symlink to ${root}/images/x/common, outside the layer folder; ` +
        "the layer's cache key holds the files at the path a hint names, and Nx does not follow links to them. Name the real path instead: # chroot-bind-mount ../common <target>",
    );
    expect(() => bindSource(roots(), { source: '../shared/s.txt' })).toThrow(
      'Name the real path instead: # chroot-bind-mount ../../../libs/shared/s.txt <target>',
    );
    // Not in the key, so a link is no harm there.
    expect(bindSource(roots(), { source: '../shared', readWrite: true })).toBe(path.join(root, 'libs/shared'));
  });

  it('refuses a symlink that leads out of the workspace, naming the script, the hint, where it leads and the fix', () => {
    symlinkSync(outside, path.join(root, 'images/x/common/data'));
    expect(() => checkBindSources(roots(), [{ source: '../common/data', target: '/data' }], 'images/x/10_a/build-layer')).toThrow(
      `images/x/10_a/build-layer: # chroot-bind-mount ../common/data /data: bind source '../common/data' resolves to ${outside}, outside the workspace ${root}; ` +
        "bind sources must stay inside the workspace, whose files make the layer's cache key. " +
        'Copy what the layer needs into the workspace (beside the layer folders, e.g. ../common) instead of linking to it.',
    );
  });

  it('refuses a source that does not exist, with the fix', () => {
    expect(() =>
      checkBindSources(
        roots(),
        [
          { source: 'files', target: '/a' },
          { source: '../nope', target: '/b' },
        ],
        'images/x/10_a/build-layer',
      ),
    ).toThrow(
      `images/x/10_a/build-layer: # chroot-bind-mount ../nope /b: chroot-bind-mount source '../nope' does not exist (${root}/images/x/nope). ` +
        `Create it, or fix the path (it is relative to the layer folder ${layerDir}).`,
    );
  });

  it('makes a missing read-write source as a folder, but never through a link out of the workspace', () => {
    expect(bindSource(roots(), { source: '../cache/apt', readWrite: true })).toBe(path.join(root, 'images/x/cache/apt'));
    expect(existsSync(path.join(root, 'images/x/cache/apt'))).toBe(true);
    symlinkSync(outside, path.join(root, 'images/x/escape'));
    expect(() => checkBindSources(roots(), [{ source: '../escape/cache', target: '/c', readWrite: true }], 'images/x/10_a/build-layer')).toThrow(
      `images/x/10_a/build-layer: # chroot-bind-mount-rw ../escape/cache /c: bind source '../escape/cache' resolves to ${outside}, outside the workspace ${root};`,
    );
    expect(existsSync(path.join(outside, 'cache'))).toBe(false);
  });

  it('refuses a read-write source that is in the layer folder or holds it, also through a symlink', () => {
    symlinkSync('10_a/files', path.join(root, 'images/x/inside'));
    expect(() => bindSource(roots(), { source: '../inside', readWrite: true })).toThrow(
      `chroot-bind-mount-rw source '../inside' resolves to ${layerDir}/files, which is inside the layer folder ${layerDir}: ` +
        "the layer's own files are its input and stay read-only. Use a folder beside it, e.g. ../cache, or # chroot-bind-mount to read it.",
    );
    expect(() => bindSource(roots(), { source: '../../x', readWrite: true })).toThrow(`resolves to ${root}/images/x, which holds the layer folder ${layerDir}`);
  });
});

describe("after a script: vmlb's clean-up never follows a symlink the script planted", () => {
  let workspace: TempWorkspace;
  let root: string;
  let host: string;
  beforeEach(() => {
    workspace = new TempWorkspace();
    workspace.write('root/etc/debian_version', '12\n');
    workspace.mkdir('root/usr/sbin');
    workspace.write('host/sbin/policy-rc.d', "the host's own\n");
    root = realpathSync(workspace.path('root'));
    host = realpathSync(workspace.path('host'));
  });
  afterEach(() => workspace.remove());

  it('unlinkedPathUnder: the host path when no component is a symlink; nothing when one is, or the path is missing or climbs', () => {
    expect(unlinkedPathUnder(root, 'usr/sbin')?.hostPath).toBe(path.join(root, 'usr/sbin'));
    symlinkSync(host, path.join(root, 'data'));
    expect(unlinkedPathUnder(root, 'data/sbin')).toBeUndefined();
    expect(unlinkedPathUnder(root, 'data')).toBeUndefined();
    expect(unlinkedPathUnder(root, 'usr/nothing')).toBeUndefined();
    expect(unlinkedPathUnder(root, 'usr/../../host')).toBeUndefined();
    expect(unlinkedPathUnder(root, 'etc/debian_version/x')).toBeUndefined();
  });

  it('removes its policy-rc.d after the script, but not through /usr/sbin replaced with a link to a host folder', () => {
    const restore = blockServiceStarts(root);
    expect(existsSync(path.join(root, 'usr/sbin/policy-rc.d'))).toBe(true);
    rmSync(path.join(root, 'usr/sbin'), { recursive: true });
    symlinkSync(path.join(host, 'sbin'), path.join(root, 'usr/sbin'));
    restore();
    expect(readFileSync(path.join(host, 'sbin/policy-rc.d'), 'utf8')).toBe("the host's own\n");
  });

  it('removes its own policy-rc.d; keeps one the script rewrote', () => {
    blockServiceStarts(root)();
    expect(existsSync(path.join(root, 'usr/sbin/policy-rc.d'))).toBe(false);
    const restore = blockServiceStarts(root);
    writeFileSync(path.join(root, 'usr/sbin/policy-rc.d'), '#!/bin/sh\nexit 0\n');
    restore();
    expect(readFileSync(path.join(root, 'usr/sbin/policy-rc.d'), 'utf8')).toBe('#!/bin/sh\nexit 0\n');
  });

  it("leaves an image's own policy-rc.d alone", () => {
    writeFileSync(path.join(root, 'usr/sbin/policy-rc.d'), 'mine');
    blockServiceStarts(root)();
    expect(readFileSync(path.join(root, 'usr/sbin/policy-rc.d'), 'utf8')).toBe('mine');
  });
});

describe('the capabilities a layer script keeps', () => {
  it("drops every capability of the kernel but the kept ones, by name, and a newer kernel's unknown ones by number", () => {
    const dropped = droppedCapabilities(42);
    expect(dropped).toEqual(
      expect.arrayContaining([
        'cap_sys_admin',
        'cap_sys_chroot',
        'cap_sys_module',
        'cap_mknod',
        'cap_net_admin',
        'cap_sys_rawio',
        'cap_sys_boot',
        'cap_sys_time',
        '41',
        '42',
      ]),
    );
    for (const kept of KEPT_CAPABILITIES) expect(dropped).not.toContain(kept);
    expect(dropped.length + KEPT_CAPABILITIES.length).toBe(43);
  });

  it('asks an older kernel to drop only capabilities it has', () => {
    expect(droppedCapabilities(37)).not.toContain('cap_bpf');
    expect(droppedCapabilities(37)).toContain('cap_audit_read');
  });
});
