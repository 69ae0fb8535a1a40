import * as fs from 'node:fs';
import * as path from 'node:path';
import { run } from '../util/exec';
import { readPartitionTable } from './partition-table';
import { selectRootPartition } from './root-partition';
import { MiB, expectMatchesSfdisk, scratchDisks } from '../../testing/sfdisk-disks';

// Every disk here is a sparse file partitioned by the real sfdisk, and every
// table we read is compared with what `sfdisk --json` says about the same disk.

const disks = scratchDisks('vmlb-partition-table-');
const { makeDisk } = disks;

describe('readPartitionTable on a block device', () => {
  let loopDevice: string | undefined;

  afterAll(async () => {
    if (loopDevice) await run('losetup', ['--detach', loopDevice]);
  });

  it('reads a loop device like the file behind it, with the size from sysfs', async () => {
    const disk = await makeDisk('loop.img', 40 * MiB, 'label: dos\nsize=8M,type=83\ntype=5\nsize=8M,type=83\n');
    loopDevice = (await run('losetup', ['--find', '--show', disk])).stdout.trim();
    const fromDevice = await readPartitionTable(loopDevice);
    expect(fromDevice).toEqual(await readPartitionTable(disk));
    expect(fromDevice.diskSize).toBe(Number((await run('blockdev', ['--getsize64', loopDevice])).stdout));
    await expectMatchesSfdisk(loopDevice, fromDevice);
  });
});

describe('readPartitionTable on a FUSE raw view of a qcow2 overlay', () => {
  let mountpoint: string | undefined;
  let daemonPid: number | undefined;

  afterAll(async () => {
    // qemu-storage-daemon --daemonize leaves its FUSE mount behind when killed ("Transport
    // endpoint is not connected"), so unmount first, then stop the daemon and wait for it.
    if (mountpoint) await run('umount', [mountpoint], { reject: false });
    if (daemonPid !== undefined) {
      process.kill(daemonPid, 'SIGTERM');
      for (let attempt = 0; attempt < 100 && isRunning(daemonPid); attempt += 1) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  });

  it('reads the partitions the overlay inherits from its raw-imported base', async () => {
    const raw = await makeDisk('fuse-source.img', 32 * MiB, 'label: gpt\nsize=4M,type=U,name="esp"\ntype=L,name="root"\n');
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, path.join(disks.dir, 'base.qcow2')]);
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', 'base.qcow2', '00_layer.qcow2'], { cwd: disks.dir });
    mountpoint = path.join(disks.dir, 'fuse.raw');
    const pidFile = path.join(disks.dir, 'qsd.pid');
    fs.writeFileSync(mountpoint, '');
    await run('qemu-storage-daemon', [
      '--blockdev',
      `driver=file,node-name=file0,filename=${path.join(disks.dir, '00_layer.qcow2')}`,
      '--blockdev',
      'driver=qcow2,node-name=disk0,file=file0',
      '--export',
      `type=fuse,id=export0,node-name=disk0,mountpoint=${mountpoint},writable=off`,
      '--daemonize',
      '--pidfile',
      pidFile,
    ]);
    daemonPid = Number(fs.readFileSync(pidFile, 'utf8').trim());

    const table = await readPartitionTable(mountpoint);
    expect(table).toEqual(await readPartitionTable(raw));
    expect(table.diskSize).toBe(32 * MiB);
    expect(selectRootPartition(table, undefined, 'disk 00_layer.qcow2')).toEqual({ number: 2, start: 5 * MiB, size: table.partitions[1].size });
  });
});

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
