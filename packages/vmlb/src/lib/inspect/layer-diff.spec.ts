import { chmodSync, lutimesSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { diffRoots, formatPackageChanges, formatRootDiff, sameContent } from './layer-diff';
import { snapshotRoot } from './root-snapshot';
import { formatBytes } from '../util/units';

const FIXED_TIME = new Date('2026-01-02T03:04:05Z');

describe('diffRoots', () => {
  let scratch: string;
  let a: string;
  let b: string;

  beforeEach(() => {
    scratch = mkdtempSync(path.join(tmpdir(), 'vmlb-layer-diff-'));
    a = path.join(scratch, 'a');
    b = path.join(scratch, 'b');
    // The same tree twice, with the same times: two roots that differ in nothing but inode numbers.
    for (const root of [a, b]) {
      mkdirSync(path.join(root, 'etc'), { recursive: true });
      writeFileSync(path.join(root, 'etc/motd'), 'welcome\n');
      writeFileSync(path.join(root, 'etc/same-size'), 'aaaa');
      writeFileSync(path.join(root, 'etc/touched'), 'unchanged');
      writeFileSync(path.join(root, 'etc/gone'), 'bye');
      writeFileSync(path.join(root, 'etc/secret'), 'x');
      chmodSync(path.join(root, 'etc/secret'), 0o644);
      symlinkSync('motd', path.join(root, 'etc/link'));
      for (const file of ['motd', 'same-size', 'touched', 'gone', 'secret']) utimesSync(path.join(root, 'etc', file), FIXED_TIME, FIXED_TIME);
      lutimesSync(path.join(root, 'etc/link'), FIXED_TIME, FIXED_TIME);
    }
  });

  afterEach(() => rmSync(scratch, { recursive: true, force: true }));

  const diff = async () => diffRoots({ root: a, snapshot: await snapshotRoot(a) }, { root: b, snapshot: await snapshotRoot(b) });

  it('finds nothing between two identical roots', async () => {
    expect((await diff()).files).toEqual({ added: [], removed: [], changed: [] });
  });

  it('says what changed for each path: content, size, mode, link target, mtime, type', async () => {
    writeFileSync(path.join(b, 'etc/motd'), 'welcome, again\n');
    writeFileSync(path.join(b, 'etc/same-size'), 'bbbb');
    utimesSync(path.join(b, 'etc/touched'), new Date(2020, 0, 1), new Date(2020, 0, 1));
    chmodSync(path.join(b, 'etc/secret'), 0o600);
    rmSync(path.join(b, 'etc/link'));
    symlinkSync('issue', path.join(b, 'etc/link'));
    rmSync(path.join(b, 'etc/gone'));
    mkdirSync(path.join(b, 'etc/gone'));
    writeFileSync(path.join(b, 'etc/new'), 'hi');

    const result = await diff();
    expect(result.files.added).toEqual([{ path: '/etc/new', size: 2, type: 'file' }]);
    expect(result.files.removed).toEqual([]);
    const changes = Object.fromEntries(result.files.changed.map((entry) => [entry.path, entry.changes]));
    expect(changes).toEqual({
      '/etc/gone': ['type'],
      '/etc/link': ['link'],
      '/etc/motd': ['content', 'size'],
      '/etc/same-size': ['content'],
      '/etc/secret': ['mode'],
      '/etc/touched': ['mtime'],
    });
    const lines = formatRootDiff(result, formatBytes);
    expect(lines).toContain('~ symlink            /etc/link  (link motd -> issue)');
    expect(lines).toContain('~ file         15 B  /etc/motd  (content, size 8 B -> 15 B)');
    expect(lines).toContain('+ file          2 B  /etc/new');
  });

  it('compares file contents byte for byte', async () => {
    const left = path.join(scratch, 'left');
    const right = path.join(scratch, 'right');
    const big = Buffer.alloc(3 * 1024 * 1024 + 17, 7);
    writeFileSync(left, big);
    writeFileSync(right, big);
    expect(await sameContent(left, right)).toBe(true);
    big[big.length - 1] = 8;
    writeFileSync(right, big);
    expect(await sameContent(left, right)).toBe(false);
    writeFileSync(right, big.subarray(0, 10));
    expect(await sameContent(left, right)).toBe(false);
  });

  it('prints the package changelog sorted by name', () => {
    expect(
      formatPackageChanges({
        manager: 'dpkg',
        installed: [{ name: 'curl', version: '7.88.1-10' }],
        removed: [{ name: 'nano', version: '7.2-1' }],
        upgraded: [{ name: 'libc6', from: '2.36-9', to: '2.36-9+deb12u4' }],
      }),
    ).toEqual(['+ curl 7.88.1-10', '~ libc6 2.36-9 -> 2.36-9+deb12u4', '- nano 7.2-1']);
  });
});
