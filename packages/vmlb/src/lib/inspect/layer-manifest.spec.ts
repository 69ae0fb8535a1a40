import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { run } from '../util/exec';
import { comparePaths, diffSnapshots, type LayerManifest, type RootSnapshot, snapshotRoot, summarizeManifest } from './layer-manifest';

let root: string;

beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'vmlb-layer-manifest-'));
});
afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

/** Writes a file inside the test root, creating its folders. */
function write(imagePath: string, content: string | Buffer = ''): string {
  const target = path.join(root, imagePath);
  fs.mkdirSync(path.dirname(target), { recursive: true });
  fs.writeFileSync(target, content);
  return target;
}

const at = (imagePath: string) => path.join(root, imagePath);
const paths = (entries: Array<{ path: string }>) => entries.map((entry) => entry.path);

/** Snapshots the root, lets `change` alter it, snapshots again and diffs. */
async function manifestOf(change: () => void, options?: { maxEntries?: number }): Promise<LayerManifest> {
  const before = await snapshotRoot(root);
  change();
  return diffSnapshots(before, await snapshotRoot(root), options);
}

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
      const snapshot = await snapshotRoot(`${root}/`);
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
    const snapshot = await snapshotRoot(root);
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
    const snapshot = await snapshotRoot(root);
    expect(snapshot.files.get('/data/caf\\xe9')?.size).toBe(3);
    expect(snapshot.files.get('/data/café')?.size).toBe(3);
    expect(snapshot.files.get('/data/caf\\xe9-dir/nested')?.size).toBe(1);
  });

  it('names the root when it is missing, relative or not a folder', async () => {
    await expect(snapshotRoot(path.join(root, 'missing'))).rejects.toThrow(`Image root ${path.join(root, 'missing')} does not exist.`);
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
      const before = await snapshotRoot(root);
      expect(before.files.has('/mnt')).toBe(true);
      expect(before.files.has('/mnt/on-tmpfs')).toBe(false);
      expect(before.mountPoints).toEqual(['/mnt']);
      fs.writeFileSync(at('/mnt/also-on-tmpfs'), 'y');
      fs.rmSync(at('/mnt/on-tmpfs'));
      expect(diffSnapshots(before, await snapshotRoot(root)).files.counts).toEqual({ added: 0, modified: 0, removed: 0 });
    } finally {
      await run('umount', [at('/mnt')], { reject: false });
    }
  });
});

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

  it('sorts by path, with a folder\'s contents right after it', async () => {
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

describe('diffSnapshots: dpkg packages', () => {
  const stanza = (fields: Record<string, string>) =>
    Object.entries(fields)
      .map(([name, value]) => `${name}: ${value}`)
      .join('\n');

  const installed = (name: string, version: string, architecture = 'amd64') =>
    stanza({ Package: name, Status: 'install ok installed', Priority: 'optional', Architecture: architecture, Version: version });

  const statusFile = (...stanzas: string[]) => `${stanzas.join('\n\n')}\n`;

  const BEFORE = statusFile(
    installed('bash', '5.2.15-2+b2'),
    installed('curl', '8.5.0-1'),
    // Multi-line fields: continuation lines must not be read as fields.
    `${installed('libc6', '2.36-9+deb12u4')}\nDescription: GNU C Library\n Package: not-a-package\n Version: 0\nConffiles:\n /etc/ld.so.conf 1234`,
    installed('oldtool', '1.0-1'),
    stanza({ Package: 'purged-long-ago', Status: 'deinstall ok config-files', Architecture: 'amd64', Version: '0.1' }),
  );

  const AFTER = statusFile(
    installed('bash', '5.2.21-2'), // upgraded
    installed('curl', '7.88.1-10'), // downgraded
    installed('libc6', '2.36-9+deb12u4'),
    installed('libc6', '2.36-9+deb12u4', 'i386'), // second architecture of the same package
    stanza({ Package: 'oldtool', Status: 'deinstall ok config-files', Architecture: 'amd64', Version: '1.0-1' }), // removed, config left
    installed('jq', '1.6-2.1', 'amd64'),
    stanza({ Package: 'pinned', Status: 'hold ok installed', Architecture: 'all', Version: '3' }),
    stanza({ Package: 'purged-long-ago', Status: 'deinstall ok config-files', Architecture: 'amd64', Version: '0.1' }),
  );

  async function snapshotWithStatus(status: string): Promise<RootSnapshot> {
    write('/var/lib/dpkg/status', status);
    return snapshotRoot(root);
  }

  it('reads installed packages, qualifying a name with its architecture only when several are installed', async () => {
    const before = await snapshotWithStatus(BEFORE);
    expect(before.packageManager).toBe('dpkg');
    expect(before.packages).toEqual(
      new Map([
        ['bash', '5.2.15-2+b2'],
        ['curl', '8.5.0-1'],
        ['libc6', '2.36-9+deb12u4'],
        ['oldtool', '1.0-1'],
      ]),
    );
    const after = await snapshotWithStatus(AFTER);
    expect([...after.packages!.keys()].sort()).toEqual(['bash', 'curl', 'jq', 'libc6:amd64', 'libc6:i386', 'pinned']);
  });

  it('lists installed, removed and upgraded (or downgraded) packages, matching libc6 with libc6:amd64', async () => {
    const before = await snapshotWithStatus(BEFORE);
    const after = await snapshotWithStatus(AFTER);
    expect(diffSnapshots(before, after).packages).toEqual({
      manager: 'dpkg',
      installed: [
        { name: 'jq', version: '1.6-2.1' },
        { name: 'libc6:i386', version: '2.36-9+deb12u4' },
        { name: 'pinned', version: '3' },
      ],
      removed: [{ name: 'oldtool', version: '1.0-1' }],
      upgraded: [
        { name: 'bash', from: '5.2.15-2+b2', to: '5.2.21-2' },
        { name: 'curl', from: '8.5.0-1', to: '7.88.1-10' },
      ],
    });
    expect(diffSnapshots(after, before).packages?.removed.map((pkg) => pkg.name)).toEqual(['jq', 'libc6:i386', 'pinned']);
  });

  it('counts every package as installed when the layer created the dpkg database', async () => {
    const before = await snapshotRoot(root);
    const after = await snapshotWithStatus(statusFile(installed('base-files', '12.4')));
    expect(diffSnapshots(before, after).packages).toEqual({ manager: 'dpkg', installed: [{ name: 'base-files', version: '12.4' }], removed: [], upgraded: [] });
  });

  it('has no packages section when neither snapshot has a dpkg database', async () => {
    write('/etc/hostname');
    const manifest = await manifestOf(() => write('/etc/motd'));
    expect(manifest.packages).toBeUndefined();
    expect('packages' in manifest).toBe(false);
  });

  it('reads the database through the image\'s own symlinks, never the host\'s', async () => {
    write('/real-var/lib/dpkg/status', statusFile(installed('inside', '1')));
    fs.symlinkSync('/real-var', at('/var'));
    const snapshot = await snapshotRoot(root);
    expect(snapshot.packages).toEqual(new Map([['inside', '1']]));
  });

  it('names the status file and line of a stanza without a Package field', async () => {
    write('/var/lib/dpkg/status', statusFile(installed('bash', '5'), 'Status: install ok installed\nVersion: 1'));
    await expect(snapshotRoot(root)).rejects.toThrow(`${at('/var/lib/dpkg/status')}:7: stanza has no Package field.`);
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
