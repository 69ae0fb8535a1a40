import * as fs from 'node:fs';
import { scratchImageRoot } from '../../testing/image-root';
import { type LayerManifest, diffSnapshots, manifestWithoutFiles, readManifest, summarizeManifest, writeManifest } from './layer-manifest';
import type { RootSnapshot } from './root-snapshot';

const image = scratchImageRoot('vmlb-layer-manifest-');
const { at, write, manifestOf } = image;
const paths = (entries: Array<{ path: string }>) => entries.map((entry) => entry.path);

const asRoot = process.getuid?.() === 0 ? it : it.skip;

describe('diffSnapshots: files', () => {
  it('lists added files and an added empty folder, but not their parent folders as modified', async () => {
    write('/etc/hostname', 'box\n');
    const manifest = await manifestOf(() => {
      write('/etc/motd', 'hello\n');
      fs.mkdirSync(at('/srv/data'), { recursive: true });
    });
    expect(manifest.files.added).toEqual([
      { path: '/etc/motd', size: 6, type: 'file' },
      { path: '/srv', size: expect.any(Number), type: 'dir' },
      { path: '/srv/data', size: expect.any(Number), type: 'dir' },
    ]);
    expect(manifest.files.modified).toEqual([]);
    expect(manifest.files.removed).toEqual([]);
  });

  it('sees a content change that changes the size', async () => {
    write('/etc/hostname', 'box\n');
    const manifest = await manifestOf(() => fs.appendFileSync(at('/etc/hostname'), 'more\n'));
    expect(manifest.files.modified).toEqual([{ path: '/etc/hostname', size: 9, type: 'file' }]);
  });

  it('sees a change of mtime alone (same size)', async () => {
    const file = write('/etc/hostname', 'box\n');
    fs.utimesSync(file, 1_000_000, 1_000_000);
    const manifest = await manifestOf(() => fs.utimesSync(file, 1_000_000, 2_000_000));
    expect(paths(manifest.files.modified)).toEqual(['/etc/hostname']);
  });

  it('sees a file replaced by rename: same size and mtime, new inode', async () => {
    const file = write('/etc/hostname', 'box\n');
    fs.utimesSync(file, 1_000_000, 1_000_000);
    const manifest = await manifestOf(() => {
      const replacement = write('/etc/hostname.new', 'cat\n');
      fs.utimesSync(replacement, 1_000_000, 1_000_000);
      fs.renameSync(replacement, file);
    });
    expect(manifest.files.modified).toEqual([{ path: '/etc/hostname', size: 4, type: 'file' }]);
    expect(manifest.files.counts).toEqual({ added: 0, modified: 1, removed: 0 });
  });

  it('sees a chmod, of a file and of a folder', async () => {
    const file = write('/usr/bin/tool', '#!/bin/sh\n');
    const manifest = await manifestOf(() => {
      fs.chmodSync(file, 0o755);
      fs.chmodSync(at('/usr'), 0o700);
    });
    expect(paths(manifest.files.modified)).toEqual(['/usr', '/usr/bin/tool']);
  });

  asRoot('sees a chown', async () => {
    const file = write('/srv/app/config', 'x');
    const manifest = await manifestOf(() => fs.chownSync(file, 1234, 1234));
    expect(paths(manifest.files.modified)).toEqual(['/srv/app/config']);
  });

  it('sees a symlink retargeted, with the size of its new target', async () => {
    fs.symlinkSync('/usr/bin/python3.11', at('/python'));
    const manifest = await manifestOf(() => {
      fs.rmSync(at('/python'));
      fs.symlinkSync('/usr/bin/python3.12', at('/python'));
    });
    expect(manifest.files.modified).toEqual([{ path: '/python', size: '/usr/bin/python3.12'.length, type: 'symlink' }]);
  });

  it('compares link targets even when nothing else differs', () => {
    const state = { size: 1, mtimeMs: 5, ino: 7, mode: fs.constants.S_IFLNK | 0o777 };
    const before: RootSnapshot = { files: new Map([['/link', { ...state, link: 'a' }]]) };
    const after: RootSnapshot = { files: new Map([['/link', { ...state, link: 'b' }]]) };
    expect(diffSnapshots(before, after).files.modified).toEqual([{ path: '/link', size: 1, type: 'symlink' }]);
    expect(diffSnapshots(before, before).files.modified).toEqual([]);
  });

  it('lists a removed tree entry by entry, each folder before its contents, with sizes from before', async () => {
    write('/opt/app/bin/run', 'run');
    write('/opt/app/lib/a.so', 'aaaa');
    write('/opt/keep', 'k');
    const manifest = await manifestOf(() => fs.rmSync(at('/opt/app'), { recursive: true }));
    expect(paths(manifest.files.removed)).toEqual(['/opt/app', '/opt/app/bin', '/opt/app/bin/run', '/opt/app/lib', '/opt/app/lib/a.so']);
    expect(manifest.files.removed.find((entry) => entry.path === '/opt/app/lib/a.so')).toEqual({ path: '/opt/app/lib/a.so', size: 4, type: 'file' });
    expect(manifest.files.modified).toEqual([]);
  });

  it("sorts by path, with a folder's contents right after it", async () => {
    const manifest = await manifestOf(() => {
      for (const name of ['/b', '/a-b', '/a/z', '/a/b', '/A', '/a.txt']) write(name);
    });
    expect(paths(manifest.files.added)).toEqual(['/A', '/a', '/a/b', '/a/z', '/a-b', '/a.txt', '/b']);
  });

  it('caps each list at maxEntries, keeping the first by path, with exact counts and the truncated flag', async () => {
    for (let index = 0; index < 5; index++) write(`/old/${index}`);
    write('/kept', 'x');
    const manifest = await manifestOf(
      () => {
        for (let index = 9; index >= 0; index--) write(`/new/${index}`);
        fs.rmSync(at('/old'), { recursive: true });
        fs.appendFileSync(at('/kept'), 'y');
      },
      { maxEntries: 3 },
    );
    expect(paths(manifest.files.added)).toEqual(['/new', '/new/0', '/new/1']);
    expect(paths(manifest.files.removed)).toEqual(['/old', '/old/0', '/old/1']);
    expect(paths(manifest.files.modified)).toEqual(['/kept']);
    expect(manifest.files.counts).toEqual({ added: 11, modified: 1, removed: 6 });
    expect(manifest.files.truncated).toBe(true);
  });

  it('is not truncated when every list fits, and reports nothing for an unchanged tree', async () => {
    write('/etc/hostname', 'box\n');
    const unchanged = await manifestOf(() => undefined);
    expect(unchanged).toEqual({
      version: 1,
      files: { added: [], modified: [], removed: [], counts: { added: 0, modified: 0, removed: 0 }, truncated: false },
    });
    const fits = await manifestOf(() => write('/a'), { maxEntries: 1 });
    expect(fits.files.truncated).toBe(false);
  });

  it('rejects a maxEntries that is not a whole number', () => {
    const empty: RootSnapshot = { files: new Map() };
    expect(() => diffSnapshots(empty, empty, { maxEntries: -1 })).toThrow('maxEntries must be a whole number >= 0, not -1.');
  });
});

describe('summarizeManifest', () => {
  const manifest = (counts: [number, number, number], packages?: [number, number, number]): LayerManifest => ({
    version: 1,
    files: { added: [], modified: [], removed: [], counts: { added: counts[0], modified: counts[1], removed: counts[2] }, truncated: true },
    ...(packages && {
      packages: {
        manager: 'dpkg' as const,
        installed: Array.from({ length: packages[0] }, (_, index) => ({ name: `new${index}`, version: '1' })),
        removed: Array.from({ length: packages[1] }, (_, index) => ({ name: `old${index}`, version: '1' })),
        upgraded: Array.from({ length: packages[2] }, (_, index) => ({ name: `up${index}`, from: '1', to: '2' })),
      },
    }),
  });

  it.each([
    ['+12 ~3 -1 files, +2 packages ~1 upgraded', manifest([12, 3, 1], [2, 0, 1])],
    ['no changes', manifest([0, 0, 0])],
    ['no changes', manifest([0, 0, 0], [0, 0, 0])],
    ['+5 files', manifest([5, 0, 0])],
    ['~2 -7 files', manifest([0, 2, 7])],
    ['~1 files, ~3 packages upgraded', manifest([0, 1, 0], [0, 0, 3])],
    ['+1 -2 packages', manifest([0, 0, 0], [1, 2, 0])],
    ['+40 files, -1 packages ~2 upgraded', manifest([40, 0, 0], [0, 1, 2])],
  ])('"%s"', (expected, input) => {
    expect(summarizeManifest(input)).toBe(expected);
  });
});
describe('the manifest file', () => {
  const build = { taskHash: null, host: 'builder', workspace: '/w', finishedAt: '2026-01-01T00:00:00.000Z', seconds: 1.5, fileSize: 10, virtualSize: 20 };

  it('is written as indented JSON with a final newline, and read back', async () => {
    const file = at('/base.manifest.json');
    await writeManifest(file, manifestWithoutFiles('base', build));
    expect(fs.readFileSync(file, 'utf8')).toBe(`${JSON.stringify({ kind: 'base', version: 1, files: null, build }, null, 2)}\n`);
    expect(readManifest(file)).toEqual({ kind: 'base', version: 1, files: null, build });
  });

  it('reads as nothing when missing or not JSON, and leaves out a build record that is not one', () => {
    expect(readManifest(at('/missing.manifest.json'))).toBeUndefined();
    expect(readManifest(write('/broken.manifest.json', '{"kind":'))).toBeUndefined();
    const odd = write('/odd.manifest.json', JSON.stringify({ kind: 'build-layer', files: null, build: { taskHash: 42 } }));
    expect(readManifest(odd)).toEqual({ kind: 'build-layer', files: null });
  });
});
