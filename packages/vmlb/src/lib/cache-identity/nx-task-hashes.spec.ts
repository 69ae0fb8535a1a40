import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { mirrorAround } from './nx-task-hashes';

/** The hashes themselves are checked against real builds in test/layer-inspect.spec.ts. */
describe('mirrorAround', () => {
  let root: string;
  let scratch: string;

  beforeEach(() => {
    root = mkdtempSync(path.join(tmpdir(), 'vmlb-mirror-root-'));
    scratch = mkdtempSync(path.join(tmpdir(), 'vmlb-mirror-scratch-'));
    mkdirSync(path.join(root, 'images/demo'), { recursive: true });
    mkdirSync(path.join(root, 'dist/images/demo'), { recursive: true });
    mkdirSync(path.join(root, 'dist/images/other'), { recursive: true });
    writeFileSync(path.join(root, 'nx.json'), '{}');
    writeFileSync(path.join(root, 'dist/images/demo/base.digest'), 'real');
  });

  afterEach(() => {
    rmSync(root, { recursive: true, force: true });
    rmSync(scratch, { recursive: true, force: true });
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
