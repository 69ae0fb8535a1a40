import * as fs from 'node:fs';
import { run } from '../util/exec';
import { readPartitionTable } from './partition-table';
import { selectRootPartition } from './root-partition';
import { MiB, expectMatchesSfdisk, scratchDisks, writeAt } from '../../testing/sfdisk-disks';

// Every disk here is a sparse file partitioned by the real sfdisk, and every
// table we read is compared with what `sfdisk --json` says about the same disk.

const disks = scratchDisks('vmlb-mbr-');
const { makeDisk } = disks;

describe('readPartitionTable on an MBR (dos) disk', () => {
  // Two primaries, then an extended partition holding a Linux and a swap logical.
  const dos = disks.readBeforeAll('dos.img', 64 * MiB, 'label: dos\nsize=8M,type=83,bootable\nsize=8M,type=83\ntype=5\nsize=8M,type=83\ntype=82\n');

  it('matches sfdisk field for field, logicals numbered from 5', async () => {
    await expectMatchesSfdisk(dos.disk, dos.table);
    expect(dos.table.partitions.map((partition) => partition.number)).toEqual([1, 2, 3, 5, 6]);
  });

  it('reports the disk size and marks only type 83 as Linux', () => {
    expect(dos.table.diskSize).toBe(64 * MiB);
    expect(dos.table.partitions.map((partition) => [partition.type, partition.linux])).toEqual([
      ['83', true],
      ['83', true],
      ['5', false],
      ['83', true],
      ['82', false],
    ]);
  });

  it('follows an extended partition of type 85 with three logicals', async () => {
    const linuxExtended = await makeDisk('dos-85.img', 32 * MiB, 'label: dos\nsize=4M,type=c\ntype=85\nsize=4M,type=83\nsize=4M,type=8e\ntype=83\n');
    const linuxExtendedTable = await readPartitionTable(linuxExtended);
    await expectMatchesSfdisk(linuxExtended, linuxExtendedTable);
    expect(linuxExtendedTable.partitions.map((partition) => partition.number)).toEqual([1, 2, 5, 6, 7]);
  });
});

describe('readPartitionTable on disks without a partition table', () => {
  it('reads an all-zero disk as type none', async () => {
    const disk = await makeDisk('empty.img', 16 * MiB);
    await expect(run('sfdisk', ['--json', disk])).rejects.toThrow('does not contain a recognized partition table');
    await expect(readPartitionTable(disk)).resolves.toEqual({ type: 'none', sectorSize: 512, diskSize: 16 * MiB, partitions: [] });
  });

  it('reads a disk that holds ext4 directly as type none, and selects the whole disk as root', async () => {
    const disk = await makeDisk('ext4.img', 24 * MiB);
    await run('mkfs.ext4', ['-q', '-F', disk]);
    await expect(run('sfdisk', ['--json', disk])).rejects.toThrow('does not contain a recognized partition table');
    const table = await readPartitionTable(disk);
    expect(table).toEqual({ type: 'none', sectorSize: 512, diskSize: 24 * MiB, partitions: [] });
    expect(selectRootPartition(table)).toEqual({ start: 0, size: 24 * MiB });
  });

  it('reads a FAT filesystem on the whole disk, whose boot sector also ends in 55 AA, as sfdisk does: a dos label without partitions', async () => {
    const disk = await makeDisk('fat.img', 16 * MiB);
    await run('busybox', ['mkdosfs', disk]);
    expect(readSector(disk, 0).subarray(510).toString('hex')).toBe('55aa');
    const table = await readPartitionTable(disk);
    expect(table).toEqual({ type: 'dos', sectorSize: 512, diskSize: 16 * MiB, partitions: [] });
    await expectMatchesSfdisk(disk, table);
    expect(() => selectRootPartition(table, undefined, 'disk fat.qcow2')).toThrow(/^Disk fat\.qcow2 has no Linux partition/);
  });

  it('like the kernel, takes 55 AA with boot flags other than 00 and 80 for a boot sector, not a partition table', async () => {
    const disk = await makeDisk('bad-boot-flag.img', 16 * MiB, 'label: dos\nsize=4M,type=83\n');
    writeAt(disk, 446 + 16, Buffer.from([0x12]));
    await expect(readPartitionTable(disk)).resolves.toEqual({ type: 'none', sectorSize: 512, diskSize: 16 * MiB, partitions: [] });
  });
});

function readSector(disk: string, sector: number): Buffer {
  const buffer = Buffer.alloc(512);
  const handle = fs.openSync(disk, 'r');
  try {
    fs.readSync(handle, buffer, 0, 512, sector * 512);
  } finally {
    fs.closeSync(handle);
  }
  return buffer;
}
