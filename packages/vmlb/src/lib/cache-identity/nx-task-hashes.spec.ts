import { lstatSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { TempWorkspace } from '../../testing/temp-workspace';
import { mirrorAround } from './nx-task-hashes';

/** The hashes themselves are checked against real builds in test/layer-inspect.spec.ts. */
describe('mirrorAround', () => {
  let workspace: TempWorkspace;
  let scratchWorkspace: TempWorkspace;
  let root: string;
  let scratch: string;

  beforeEach(() => {
    workspace = new TempWorkspace();
    scratchWorkspace = new TempWorkspace();
    root = workspace.root;
    scratch = scratchWorkspace.root;
    workspace.createFiles({ 'nx.json': '{}', 'dist/images/demo/base.digest': 'real' });
    workspace.mkdir('images/demo');
    workspace.mkdir('dist/images/other');
  });

  afterEach(() => {
    workspace.remove();
    scratchWorkspace.remove();
  });

  it('links everything beside the path and leaves the image folder empty', () => {
    mirrorAround(root, scratch, 'dist/images/demo');
    expect(readdirSync(scratch).sort()).toEqual(['dist', 'images', 'nx.json']);
    expect(readlinkSync(path.join(scratch, 'images'))).toBe(path.join(root, 'images'));
    expect(readlinkSync(path.join(scratch, 'nx.json'))).toBe(path.join(root, 'nx.json'));
    expect(lstatSync(path.join(scratch, 'dist')).isDirectory()).toBe(true);
    expect(readlinkSync(path.join(scratch, 'dist/images/other'))).toBe(path.join(root, 'dist/images/other'));
    expect(readdirSync(path.join(scratch, 'dist/images/demo'))).toEqual([]);
  });

  it('works when dist/ does not exist yet', () => {
    rmSync(path.join(root, 'dist'), { recursive: true });
    mirrorAround(root, scratch, 'dist/images/demo');
    expect(readdirSync(path.join(scratch, 'dist/images/demo'))).toEqual([]);
  });

  it('refuses a folder outside the workspace', () => {
    expect(() => mirrorAround(root, scratch, '../elsewhere')).toThrow("'../elsewhere' is not a folder inside the workspace.");
  });
});
