import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { execa } from 'execa';
import { TempWorkspace } from '../../testing/temp-workspace';
import { AttachedDisk, releaseLeftovers } from './disk-attach';
import { isMounted, listLoopDevices } from './mounts';
import { readPartitionTable } from './partition-table';
import { selectRootPartition } from './root-partition';
import { isAlive } from '../util/processes';
import { WorkDir } from './work-dir';

/** Real qemu-storage-daemon, FUSE export, loop devices and mounts. */
describe('AttachedDisk', () => {
  const workspace = new TempWorkspace();
  const dir = workspace.root;
  const base = path.join(dir, 'base.qcow2');
  const log = () => undefined;

  beforeAll(async () => {
    // A 32 MiB disk: MBR, one Linux partition at 1 MiB holding ext4.
    const raw = path.join(dir, 'disk.raw');
    await execa('truncate', ['-s', '32M', raw]);
    await execa('sfdisk', ['--quiet', raw], { input: 'label: dos\nstart=2048, type=83\n' });
    await execa('mkfs.ext4', ['-q', '-F', '-E', 'offset=1048576', raw, '31M']);
    await execa('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, base]);
  });
  afterAll(() => workspace.remove());

  const overlay = async (name: string) => {
    const file = path.join(dir, name);
    await execa('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', 'base.qcow2', file], { cwd: dir });
    return file;
  };
  const loopsOn = async (file: string) => (await listLoopDevices()).filter((loop) => loop.backFile === file);

  it('mounts the root partition read-write and releases everything on close', async () => {
    const file = await overlay('write.qcow2');
    const workDir = new WorkDir(path.join(dir, '.vmlb', 'write'));
    const disk = await AttachedDisk.open({ overlay: file, workDir, log });
    const daemonPid = workDir.readState()!.daemonPid!;
    expect(isAlive(daemonPid)).toBe(true);
    expect(isMounted(workDir.exportFile)).toBe(true);

    const root = selectRootPartition(await readPartitionTable(disk.rawDisk), undefined, 'the test disk');
    expect(root).toEqual({ number: 1, start: 1048576, size: 31 * 1048576 });
    await disk.mount(root, workDir.rootDir);
    writeFileSync(path.join(workDir.rootDir, 'written'), 'through FUSE\n');
    await disk.close();

    expect(isAlive(daemonPid)).toBe(false);
    expect(isMounted(workDir.exportFile)).toBe(false);
    expect(await loopsOn(workDir.exportFile)).toEqual([]);
    expect(existsSync(workDir.dir)).toBe(false);
    const { stdout } = await execa('qemu-img', ['check', file]);
    expect(stdout).toMatch(/No errors were found/);
    // Read back without mounting: debugfs on a raw copy of the overlay's partition.
    const copy = path.join(dir, 'check.raw');
    await execa('qemu-img', ['convert', '-O', 'raw', file, copy]);
    const { stdout: written } = await execa('sh', [
      '-c',
      `dd if=${copy} bs=1M skip=1 status=none > ${copy}.p && debugfs -R 'cat /written' ${copy}.p 2>/dev/null`,
    ]);
    expect(written).toBe('through FUSE');
  });

  it('attaches read-only: the mount refuses writes, the file is unchanged, and a sweep never removes it', async () => {
    const file = await overlay('look.qcow2');
    const before = readFileSync(file);
    const workDir = new WorkDir(path.join(dir, '.vmlb', 'look'));
    const disk = await AttachedDisk.open({ overlay: file, workDir, readOnly: true, log });
    expect(workDir.readState()!.partialFile).toBeUndefined();
    await disk.mount(selectRootPartition(await readPartitionTable(disk.rawDisk)), workDir.rootDir);
    expect(() => writeFileSync(path.join(workDir.rootDir, 'x'), 'no')).toThrow(/EROFS|read-only/);
    const loops = await loopsOn(workDir.exportFile);
    expect(loops).toHaveLength(1);
    const { stdout } = await execa('blockdev', ['--getro', loops[0].name]);
    expect(stdout.trim()).toBe('1');
    // As after a SIGKILL: the sweep releases the attachment and leaves the layer file alone.
    await releaseLeftovers(workDir, log);
    expect(existsSync(file)).toBe(true);
    expect(readFileSync(file).equals(before)).toBe(true);
    expect(isMounted(workDir.exportFile)).toBe(false);
  });

  it('releases what a killed build left: daemon, export, loop device and mount', async () => {
    const file = await overlay('killed.qcow2');
    const workDir = new WorkDir(path.join(dir, '.vmlb', 'killed'));
    const disk = await AttachedDisk.open({ overlay: file, workDir, log });
    await disk.mount(selectRootPartition(await readPartitionTable(disk.rawDisk)), workDir.rootDir);
    const daemonPid = workDir.readState()!.daemonPid!;
    // As if this process had died: another owner, long gone, in the state file.
    workDir.writeState({ ...workDir.readState()!, owner: 2 ** 22 + 1 });

    const released = await releaseLeftovers(workDir, log);

    expect(released).toEqual(
      expect.arrayContaining([
        `unmounted ${workDir.rootDir}`,
        `stopped qemu-storage-daemon (pid ${daemonPid})`,
        `unmounted ${workDir.exportFile}`,
        `removed ${file}`,
      ]),
    );
    expect(released.some((line) => /^detached \/dev\/loop\d+$/.test(line))).toBe(true);
    expect(isAlive(daemonPid)).toBe(false);
    expect(isMounted(workDir.rootDir)).toBe(false);
    expect(await loopsOn(workDir.exportFile)).toEqual([]);
    expect(existsSync(workDir.dir)).toBe(false);
  });

  it('finds the daemon by its pid file when the build was killed before recording it', async () => {
    const file = await overlay('unrecorded.qcow2');
    const workDir = new WorkDir(path.join(dir, '.vmlb', 'unrecorded'));
    await AttachedDisk.open({ overlay: file, workDir, log });
    const { daemonPid, ...withoutDaemon } = workDir.readState()!;
    workDir.writeState({ ...withoutDaemon, owner: 2 ** 22 + 1 });

    const released = await releaseLeftovers(workDir, log);

    expect(released).toEqual(expect.arrayContaining([`stopped qemu-storage-daemon (pid ${daemonPid})`, `unmounted ${workDir.exportFile}`]));
    expect(isAlive(daemonPid!)).toBe(false);
    expect(isMounted(workDir.exportFile)).toBe(false);
  });

  it('refuses to touch the work folder of a build that is still running', async () => {
    const workDir = new WorkDir(path.join(dir, '.vmlb', 'busy'));
    workDir.writeState({ owner: process.ppid, loopDevices: [], mounts: [] });
    await expect(releaseLeftovers(workDir, log)).rejects.toThrow(`Another vmlb build (pid ${process.ppid}) is building this layer right now`);
    workDir.remove();
  });

  it('says clearly when the nbd device does not exist, and leaves nothing', async () => {
    const file = await overlay('nbd.qcow2');
    const workDir = new WorkDir(path.join(dir, '.vmlb', 'nbd'));
    await expect(AttachedDisk.open({ overlay: file, workDir, nbdDevice: '/dev/nbd15', log })).rejects.toThrow(
      "/dev/nbd15 does not exist: the nbd kernel module is not loaded. Load it with 'modprobe nbd max_part=16', or leave out --nbd",
    );
    expect(existsSync(workDir.dir)).toBe(false);
    expect(readFileSync(file).length).toBeGreaterThan(0);
  });
});
