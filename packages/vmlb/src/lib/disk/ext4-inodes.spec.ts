import { appendFileSync, chmodSync, linkSync, mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { execa } from 'execa';
import { TempWorkspace } from '../../testing/temp-workspace';
import { changedInodesSince } from './ext4-inodes';
import { diffSnapshots } from '../inspect/layer-manifest';
import { type RootSnapshot, snapshotRoot, updateSnapshot } from '../inspect/root-snapshot';

/** Real ext4 filesystems on loop devices: what the manifest's incremental walk relies on. */
describe('changed inodes and the incremental snapshot', () => {
  let workspace: TempWorkspace;
  let scratch: string;
  let device: string;
  let root: string;

  const mountFresh = async (features: string[]) => {
    const image = path.join(scratch, 'fs.img');
    await execa('truncate', ['-s', '64M', image]);
    await execa('mkfs.ext4', ['-q', '-F', ...features, image]);
    device = (await execa('losetup', ['--find', '--show', image])).stdout.trim();
    root = path.join(scratch, 'root');
    mkdirSync(root);
    await execa('mount', [device, root]);
  };
  const settle = () => new Promise((resolve) => setTimeout(resolve, 2100));
  const comparable = (snapshot: RootSnapshot) => [...snapshot.files].sort(([a], [b]) => (a < b ? -1 : 1));

  beforeEach(() => {
    workspace = new TempWorkspace();
    scratch = workspace.root;
    device = '';
  });

  afterEach(async () => {
    await execa('umount', [root], { reject: false });
    if (device) await execa('losetup', ['--detach', device], { reject: false });
    workspace.remove();
  });

  /** A tree with files, hard links, symlinks and nested folders, as a layer's parent leaves it. */
  const populate = () => {
    for (const dir of ['etc', 'usr/share/doc/a', 'usr/share/doc/b', 'var/lib/old/deep', 'opt']) mkdirSync(path.join(root, dir), { recursive: true });
    for (let index = 0; index < 300; index++) writeFileSync(path.join(root, 'usr/share/doc/a', `f${index}`), `file ${index}\n`);
    writeFileSync(path.join(root, 'etc/motd'), 'welcome\n');
    writeFileSync(path.join(root, 'etc/hostname'), 'box\n');
    writeFileSync(path.join(root, 'etc/replaced'), 'old\n');
    writeFileSync(path.join(root, 'var/lib/old/deep/x'), 'x');
    writeFileSync(path.join(root, 'opt/tool'), 'tool');
    linkSync(path.join(root, 'opt/tool'), path.join(root, 'opt/tool-link'));
    symlinkSync('motd', path.join(root, 'etc/motd.link'));
  };

  /** What a layer script does: every kind of change the manifest reports. */
  const change = () => {
    appendFileSync(path.join(root, 'etc/motd'), 'more\n');
    chmodSync(path.join(root, 'etc/hostname'), 0o600);
    rmSync(path.join(root, 'etc/replaced'));
    writeFileSync(path.join(root, 'etc/replaced'), 'new\n');
    rmSync(path.join(root, 'var/lib/old'), { recursive: true });
    mkdirSync(path.join(root, 'srv/new/tree'), { recursive: true });
    writeFileSync(path.join(root, 'srv/new/tree/file'), 'in a new tree');
    renameSync(path.join(root, 'usr/share/doc/a/f7'), path.join(root, 'usr/share/doc/b/f7'));
    appendFileSync(path.join(root, 'opt/tool-link'), '+');
    rmSync(path.join(root, 'etc/motd.link'));
    symlinkSync('hostname', path.join(root, 'etc/motd.link'));
    writeFileSync(path.join(root, 'usr/share/doc/a/f100'), 'rewritten in place\n');
  };

  it.each([
    ['ext4 (metadata_csum, 64bit)', []],
    ['ext4 without uninit_bg or metadata_csum', ['-O', '^metadata_csum,^uninit_bg,^64bit']],
    ['ext2', ['-t', 'ext2']],
  ])('%s: the incremental snapshot equals a full walk', async (_label, features) => {
    await mountFresh(features as string[]);
    populate();
    await execa('sync', ['--file-system', root]);
    const before = await snapshotRoot(root);
    // As a parent built a while ago: its changes are older than the second before the script.
    await settle();
    // Whole seconds, one back: the kernel's clock for timestamps may lag a tick.
    const since = Math.floor(Date.now() / 1000) - 1;
    change();
    await execa('sync', ['--file-system', root]);

    const changed = await changedInodesSince(device, since);
    expect(changed).toBeDefined();
    // Far fewer than the filesystem has: the point of reading them.
    expect(changed!.inodes.size).toBeLessThan(before.files.size / 4);
    const incremental = await updateSnapshot(before, root, changed!.inodes);
    const full = await snapshotRoot(root);
    expect(comparable(incremental!)).toEqual(comparable(full));
    expect(diffSnapshots(before, incremental!)).toEqual(diffSnapshots(before, full));
    expect(diffSnapshots(before, full).files.counts).toEqual({ added: 5, modified: 7, removed: 4 });
  });

  it('is not fooled by timestamps a script sets: ctime is the kernel’s', async () => {
    await mountFresh([]);
    populate();
    await execa('sync', ['--file-system', root]);
    const before = await snapshotRoot(root);
    await settle();
    const since = Math.floor(Date.now() / 1000) - 1;
    writeFileSync(path.join(root, 'etc/motd'), 'same size\n');
    await execa('touch', ['-d', '2001-01-01', path.join(root, 'etc/motd')]);
    await execa('sync', ['--file-system', root]);
    const changed = await changedInodesSince(device, since);
    const incremental = await updateSnapshot(before, root, changed!.inodes);
    expect(diffSnapshots(before, incremental!).files.modified.map((entry) => entry.path)).toEqual(['/etc/motd']);
  });

  it('never looks through a folder a script replaced with a symlink to a host folder', async () => {
    await mountFresh([]);
    populate();
    const host = path.join(scratch, 'host');
    mkdirSync(path.join(host, 'lib/old/deep'), { recursive: true });
    await execa('sync', ['--file-system', root]);
    const before = await snapshotRoot(root);
    await settle();
    const since = Math.floor(Date.now() / 1000) - 1;
    // /var/lib changes too (as when vmlb made a mount point in it), so it is looked at again.
    writeFileSync(path.join(root, 'var/lib/new'), 'x');
    renameSync(path.join(root, 'var'), path.join(root, 'var.moved'));
    symlinkSync(host, path.join(root, 'var'));
    await execa('sync', ['--file-system', root]);
    const changed = await changedInodesSince(device, since);
    const incremental = await updateSnapshot(before, root, changed!.inodes);
    const full = await snapshotRoot(root);
    expect(comparable(incremental!)).toEqual(comparable(full));
    expect(incremental!.files.get('/var')?.mode).toBe(full.files.get('/var')?.mode);
    expect([...incremental!.files.keys()].filter((imagePath) => imagePath.startsWith('/var/'))).toEqual([]);
  });

  it('says it cannot read a device that holds no ext filesystem', async () => {
    const image = path.join(scratch, 'blank.img');
    await execa('truncate', ['-s', '4M', image]);
    await expect(changedInodesSince(image, 0)).resolves.toBeUndefined();
  });
});
