import { symlinkSync } from 'node:fs';
import { TempWorkspace } from '../../testing/temp-workspace';
import { noshareStoreKey } from '../../lib/cache-identity/local-layer-store';
import { normalizeOptions } from './executor';

const hints = (overrides: { noshare?: boolean; nocache?: boolean }) => ({
  hints: { nocache: false, noshare: false, bindMounts: [], partitionMounts: [], ...overrides },
});

describe('noshareStoreKey', () => {
  it('is the Nx task hash for a noshare layer', () => {
    expect(noshareStoreKey(hints({ noshare: true }), { NX_TASK_HASH: '13750905848522521693' })).toBe('13750905848522521693');
  });

  it('is absent for a layer Nx caches itself (no hint)', () => {
    expect(noshareStoreKey(hints({}), { NX_TASK_HASH: '1' })).toBeUndefined();
  });

  it('is absent when the layer is also nocache: stored nowhere', () => {
    expect(noshareStoreKey(hints({ noshare: true, nocache: true }), { NX_TASK_HASH: '1' })).toBeUndefined();
  });

  it('is absent under --skip-nx-cache, and when Nx passed no hash', () => {
    expect(noshareStoreKey(hints({ noshare: true }), { NX_TASK_HASH: '1', NX_SKIP_NX_CACHE: 'true' })).toBeUndefined();
    expect(noshareStoreKey(hints({ noshare: true }), { NX_TASK_HASH: '' })).toBeUndefined();
    expect(noshareStoreKey(hints({ noshare: true }), {})).toBeUndefined();
  });
});

describe('normalizeOptions', () => {
  let workspace: TempWorkspace;
  beforeEach(() => {
    workspace = new TempWorkspace();
    workspace.mkdir('outside');
  });
  afterEach(() => workspace.remove());

  const options = {
    imageName: 'demo',
    layer: '10_a',
    layerDir: 'images/demo/10_a',
    script: 'images/demo/10_a/build-layer',
    parent: 'dist/images/demo/00_disk.qcow2',
    output: 'dist/images/demo/10_a.qcow2',
  };

  it('refuses a # chroot-bind-mount source that leads out of the workspace, before anything is built', () => {
    const elsewhere = new TempWorkspace();
    try {
      workspace.script('images/demo/10_a/build-layer', '# chroot-bind-mount data /data');
      symlinkSync(elsewhere.root, workspace.path('images/demo/10_a/data'));
      expect(() => normalizeOptions(options, workspace.root, {})).toThrow(
        /^images\/demo\/10_a\/build-layer: # chroot-bind-mount data \/data: bind source 'data' resolves to .*, outside the workspace /,
      );
    } finally {
      elsewhere.remove();
    }
  });

  it('accepts a # chroot-bind-mount source elsewhere in the workspace', () => {
    workspace.script('images/demo/10_a/build-layer', '# chroot-bind-mount ../../../outside /data', '# chroot-bind-mount ../common /opt/common');
    workspace.write('images/demo/common/c.txt', 'c');
    expect(normalizeOptions(options, workspace.root, {}).hints.bindMounts).toEqual([
      { source: '../../../outside', target: '/data' },
      { source: '../common', target: '/opt/common' },
    ]);
  });

  it('refuses a # chroot-bind-mount source that is not in the layer folder', () => {
    workspace.script('images/demo/10_a/build-layer', '# chroot-bind-mount files /opt/files');
    expect(() => normalizeOptions(options, workspace.root, {})).toThrow(
      "images/demo/10_a/build-layer: # chroot-bind-mount files /opt/files: chroot-bind-mount source 'files' does not exist",
    );
  });

  it('reads the hints of a sound script', () => {
    workspace.script('images/demo/10_a/build-layer', '# chroot-bind-mount files /opt/files');
    workspace.write('images/demo/10_a/files/a', 'a');
    expect(normalizeOptions(options, workspace.root, {}).hints.bindMounts).toEqual([{ source: 'files', target: '/opt/files' }]);
  });

  it('keeps a failed layer only under VMLB_PAUSE_AT=failed: with a shell when someone can type, else held', () => {
    workspace.script('images/demo/10_a/build-layer');
    const keepFailed = (env: NodeJS.ProcessEnv, stdinIsTTY: boolean, ci = false) =>
      normalizeOptions(options, workspace.root, env, undefined, { stdinIsTTY, ci }).keepFailed;
    expect(keepFailed({}, true)).toBeUndefined();
    expect(keepFailed({ VMLB_PAUSE_AT: 'mounted' }, true)).toBeUndefined();
    expect(keepFailed({ VMLB_PAUSE_AT: 'failed' }, true)).toBe('shell');
    expect(keepFailed({ VMLB_PAUSE_AT: 'failed' }, false)).toBe('held');
    expect(keepFailed({ VMLB_PAUSE_AT: 'failed' }, true, true)).toBe('held');
    expect(() => keepFailed({ VMLB_PAUSE_AT: 'fail' }, true)).toThrow('VMLB_PAUSE_AT=fail is not a build phase.');
  });
});
