import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { run } from '../util/exec';
import { scratchImageRoot } from '../../testing/image-root';
import { comparePaths } from './file-entries';
import { diffSnapshots } from './layer-manifest';
import { snapshotRoot, updateSnapshot } from './root-snapshot';

const image = scratchImageRoot('vmlb-root-snapshot-');
const { at, write } = image;

const asRoot = process.getuid?.() === 0 ? it : it.skip;

describe('snapshotRoot', () => {
  it('records every entry by its path inside the image, with its type, and does not follow symlinks', async () => {
    write('/etc/hostname', 'box\n');
    fs.mkdirSync(at('/srv/empty'), { recursive: true });
    fs.symlinkSync('/etc', at('/etc-link'));
    const outside = fs.mkdtempSync(path.join(os.tmpdir(), 'vmlb-layer-manifest-outside-'));
    try {
      fs.writeFileSync(path.join(outside, 'secret'), 'x');
      fs.symlinkSync(outside, at('/escape'));
      const snapshot = await snapshotRoot(`${image.root}/`);
      expect([...snapshot.files.keys()].sort(comparePaths)).toEqual(['/', '/escape', '/etc', '/etc/hostname', '/etc-link', '/srv', '/srv/empty']);
      expect(snapshot.files.get('/etc/hostname')).toMatchObject({ size: 4, ino: fs.statSync(at('/etc/hostname')).ino });
      expect(snapshot.files.get('/etc-link')?.link).toBe('/etc');
      expect(snapshot.files.get('/escape')?.link).toBe(outside);
      expect(snapshot.packages).toBeUndefined();
      expect(snapshot.packageManager).toBeUndefined();
    } finally {
      fs.rmSync(outside, { recursive: true, force: true });
    }
  });

  it('lists /proc, /sys, /dev and /run but not what is in them; /tmp is walked', async () => {
    for (const folder of ['/proc', '/sys', '/dev', '/run', '/tmp']) write(`${folder}/inside`);
    const snapshot = await snapshotRoot(image.root);
    for (const folder of ['/proc', '/sys', '/dev', '/run']) {
      expect(snapshot.files.has(folder)).toBe(true);
      expect(snapshot.files.has(`${folder}/inside`)).toBe(false);
    }
    expect(snapshot.files.has('/tmp/inside')).toBe(true);
  });

  it('keeps names that are not valid UTF-8, each under its own key', async () => {
    const latin1Name = Buffer.from([0x63, 0x61, 0x66, 0xe9]); // "café" in latin1
    const utf8Name = Buffer.from('café', 'utf8');
    fs.mkdirSync(at('/data'));
    for (const name of [latin1Name, utf8Name]) {
      fs.writeFileSync(Buffer.concat([Buffer.from(`${at('/data')}/`), name]), 'abc');
    }
    fs.mkdirSync(Buffer.concat([Buffer.from(`${at('/data')}/`), latin1Name, Buffer.from('-dir')]));
    fs.writeFileSync(Buffer.concat([Buffer.from(`${at('/data')}/`), latin1Name, Buffer.from('-dir/nested')]), 'x');
    const snapshot = await snapshotRoot(image.root);
    expect(snapshot.files.get('/data/caf\\xe9')?.size).toBe(3);
    expect(snapshot.files.get('/data/café')?.size).toBe(3);
    expect(snapshot.files.get('/data/caf\\xe9-dir/nested')?.size).toBe(1);
  });

  it('names the root when it is missing, relative or not a folder', async () => {
    await expect(snapshotRoot(path.join(image.root, 'missing'))).rejects.toThrow(`Image root ${path.join(image.root, 'missing')} does not exist.`);
    await expect(snapshotRoot('relative/root')).rejects.toThrow('Image root relative/root is not an absolute path.');
    const file = write('/file');
    await expect(snapshotRoot(file)).rejects.toThrow(`Image root ${file} is not a folder.`);
  });

  asRoot('does not descend into another filesystem mounted under the root', async () => {
    write('/etc/hostname', 'box\n');
    fs.mkdirSync(at('/mnt'));
    await run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'vmlb-test', at('/mnt')]);
    try {
      fs.writeFileSync(at('/mnt/on-tmpfs'), 'x');
      const before = await snapshotRoot(image.root);
      expect(before.files.has('/mnt')).toBe(true);
      expect(before.files.has('/mnt/on-tmpfs')).toBe(false);
      expect(before.mountPoints).toEqual(['/mnt']);
      fs.writeFileSync(at('/mnt/also-on-tmpfs'), 'y');
      fs.rmSync(at('/mnt/on-tmpfs'));
      expect(diffSnapshots(before, await snapshotRoot(image.root)).files.counts).toEqual({ added: 0, modified: 0, removed: 0 });
    } finally {
      await run('umount', [at('/mnt')], { reject: false });
    }
  });
});

describe('updateSnapshot', () => {
  /** What a snapshot says of each path, minus times: enough to tell an update from a walk. */
  const entries = (snapshot: Awaited<ReturnType<typeof snapshotRoot>>) =>
    [...snapshot.files]
      .map(([imagePath, state]) => [imagePath, state.ino, state.size, state.mode])
      .sort((a, b) => comparePaths(a[0] as string, b[0] as string));

  it('sees a file renamed over a known one whose old inode the scan did not report (freed past the used slots)', async () => {
    write('/etc/ld.so.cache', 'old cache');
    write('/etc/hostname', 'image');
    const before = await snapshotRoot(image.root);
    // As ldconfig and dpkg write: a new file, renamed over the old name.
    write('/etc/ld.so.cache~', 'the new, longer cache');
    fs.renameSync(at('/etc/ld.so.cache~'), at('/etc/ld.so.cache'));
    // The scan reports the folder and the new inode, not the freed one.
    const changed = new Set([fs.lstatSync(at('/etc')).ino, fs.lstatSync(at('/etc/ld.so.cache')).ino]);
    expect(changed.has(before.files.get('/etc/ld.so.cache')!.ino)).toBe(false);
    const incremental = await updateSnapshot(before, image.root, changed);
    const full = await snapshotRoot(image.root);
    expect(entries(incremental!)).toEqual(entries(full));
    expect(diffSnapshots(before, incremental!).files.modified.map((entry) => entry.path)).toEqual(['/etc/ld.so.cache']);
  });
});
