import { realpathSync, symlinkSync } from 'node:fs';
import * as path from 'node:path';
import { TempWorkspace } from '../../testing/temp-workspace';
import { bindSource, checkBindSources } from './chroot';

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
    expect(() => checkBindSources(layerDir, [{ source: 'files', target: '/a' }, { source: 'nope', target: '/b' }], 'images/x/10_a/build-layer')).toThrow(
      `images/x/10_a/build-layer: # chroot-bind-mount nope /b: chroot-bind-mount source 'nope' does not exist in the layer folder ${layerDir}. Create it there, or fix the path`,
    );
  });
});
