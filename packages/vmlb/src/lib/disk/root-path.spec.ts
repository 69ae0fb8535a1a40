import { realpathSync, symlinkSync } from 'node:fs';
import * as path from 'node:path';
import { TempWorkspace } from '../../testing/temp-workspace';
import { resolveInRoot } from './root-path';

describe('resolveInRoot: paths inside a mounted image resolve inside it', () => {
  let workspace: TempWorkspace;
  let root: string;
  beforeEach(() => {
    workspace = new TempWorkspace();
    workspace.mkdir('root/etc');
    workspace.mkdir('host/secret');
    root = realpathSync(workspace.path('root'));
  });
  afterEach(() => workspace.remove());

  it('follows an absolute symlink from the image root, not the host root', () => {
    symlinkSync(workspace.path('host/secret'), path.join(root, 'data'));
    expect(resolveInRoot(root, '/data/x')).toBe(path.join(root, workspace.path('host/secret'), 'x'));
  });

  it('cannot climb above the image root with .. in the path or in a symlink', () => {
    symlinkSync('../../../../host', path.join(root, 'up'));
    expect(resolveInRoot(root, '/../../host/secret')).toBe(path.join(root, 'host/secret'));
    expect(resolveInRoot(root, '/up/secret')).toBe(path.join(root, 'host/secret'));
  });

  it('follows relative symlinks inside the image', () => {
    symlinkSync('etc', path.join(root, 'config'));
    expect(resolveInRoot(root, '/config/app')).toBe(path.join(root, 'etc/app'));
  });

  it('gives up on a symlink loop', () => {
    symlinkSync('/loop', path.join(root, 'loop'));
    expect(() => resolveInRoot(root, '/loop/x')).toThrow('Too many symbolic links resolving /loop/x inside the image.');
  });
});
