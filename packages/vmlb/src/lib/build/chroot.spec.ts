import { existsSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { TempWorkspace } from '../../testing/temp-workspace';
import { bindSource, checkBindSources } from './bind-sources';
import { blockServiceStarts, unlinkedPathUnder } from './image-root-edits';
import { KEPT_CAPABILITIES, droppedCapabilities } from './sandbox-capabilities';

describe('bind-mount sources stay inside the layer folder', () => {
  let workspace: TempWorkspace;
  let layerDir: string;
  beforeEach(() => {
    workspace = new TempWorkspace();
    workspace.write('layer/files/a.txt', 'a');
    workspace.write('outside/b.txt', 'b');
    layerDir = realpathSync(workspace.path('layer'));
  });
  afterEach(() => workspace.remove());

  it('accepts a folder or file of the layer folder, also through a symlink that stays inside', () => {
    symlinkSync('files', path.join(layerDir, 'same'));
    expect(bindSource(layerDir, 'files')).toBe(path.join(layerDir, 'files'));
    expect(bindSource(layerDir, 'same/a.txt')).toBe(path.join(layerDir, 'files/a.txt'));
    expect(() => checkBindSources(layerDir, [{ source: 'same', target: '/opt' }], 'images/x/10_a/build-layer')).not.toThrow();
  });

  it('refuses a symlink that leads out of the layer folder, naming the script, the hint, where it leads and the fix', () => {
    const outside = realpathSync(workspace.path('outside'));
    symlinkSync(outside, path.join(layerDir, 'data'));
    expect(() => checkBindSources(layerDir, [{ source: 'data', target: '/data' }], 'images/x/10_a/build-layer')).toThrow(
      `images/x/10_a/build-layer: # chroot-bind-mount data /data: chroot-bind-mount source 'data' resolves to ${outside}, outside the layer folder ${layerDir}; ` +
        'bind sources must stay inside it. Copy what the layer needs into its folder instead of linking to it.',
    );
  });

  it('refuses a source that does not exist, with the fix', () => {
    expect(() =>
      checkBindSources(
        layerDir,
        [
          { source: 'files', target: '/a' },
          { source: 'nope', target: '/b' },
        ],
        'images/x/10_a/build-layer',
      ),
    ).toThrow(
      `images/x/10_a/build-layer: # chroot-bind-mount nope /b: chroot-bind-mount source 'nope' does not exist in the layer folder ${layerDir}. Create it there, or fix the path`,
    );
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
