import { readPartitionTable } from './partition-table';
import type { PartitionTable } from './partition-types';
import { selectPartition, selectRootPartition } from './root-partition';
import { MiB, scratchDisks } from '../../testing/sfdisk-disks';

// Every disk here is a sparse file partitioned by the real sfdisk.

const disks = scratchDisks('vmlb-root-partition-');
const { makeDisk } = disks;

describe('selectRootPartition and selectPartition', () => {
  let dos: PartitionTable;
  let gpt: PartitionTable;
  let noLinux: PartitionTable;
  let none: PartitionTable;

  beforeAll(async () => {
    dos = await readPartitionTable(
      await makeDisk('select-dos.img', 64 * MiB, 'label: dos\nsize=8M,type=83,bootable\nsize=8M,type=83\ntype=5\nsize=8M,type=83\ntype=82\n'),
    );
    gpt = await readPartitionTable(
      await makeDisk('select-gpt.img', 64 * MiB, 'label: gpt\nsize=8M,type=U,name="EFI system"\nsize=16M,type=L,name="root"\ntype=S\n'),
    );
    noLinux = await readPartitionTable(await makeDisk('select-nolinux.img', 32 * MiB, 'label: dos\nsize=8M,type=c\ntype=82\n'));
    none = await readPartitionTable(await makeDisk('select-none.img', 16 * MiB));
  });

  it('returns the requested partition', () => {
    expect(selectRootPartition(dos, 5, 'disk base.qcow2')).toEqual({ number: 5, start: 18 * MiB, size: 8 * MiB });
    expect(selectPartition(gpt, 1, 'disk base.qcow2')).toEqual({ number: 1, start: 1 * MiB, size: 8 * MiB });
  });

  it('returns the only Linux partition when none is requested', () => {
    expect(selectRootPartition(gpt, undefined, 'disk base.qcow2')).toEqual({ number: 2, start: 9 * MiB, size: 16 * MiB });
  });

  it('names the number and the disk and lists the partitions when the requested one does not exist', () => {
    expect(() => selectRootPartition(dos, 4, 'disk base.qcow2')).toThrow(
      'rootPartition 4 (image.json) does not exist on disk base.qcow2. Partitions on disk base.qcow2 (dos):\n' +
        '  1  8 MiB at 1 MiB  type 83 (Linux)  bootable\n' +
        '  2  8 MiB at 9 MiB  type 83 (Linux)\n' +
        '  3  47 MiB at 17 MiB  type 5 (Extended)\n' +
        '  5  8 MiB at 18 MiB  type 83 (Linux)\n' +
        '  6  37 MiB at 27 MiB  type 82 (Linux swap)\n' +
        'Set "rootPartition" in image.json to the number of the partition that holds the root filesystem.',
    );
    expect(() => selectPartition(gpt, 9, 'disk 10_update.qcow2')).toThrow(
      'Partition 9 does not exist on disk 10_update.qcow2. Partitions on disk 10_update.qcow2 (gpt):\n' +
        '  1  8 MiB at 1 MiB  type c12a7328-f81f-11d2-ba4b-00a0c93ec93b (EFI System)  "EFI system"\n' +
        '  2  16 MiB at 9 MiB  type 0fc63daf-8483-4772-8e79-3d69d8477de4 (Linux filesystem)  "root"\n' +
        '  3  38 MiB at 25 MiB  type 0657fd6d-a4ab-43c4-84e5-0933c84b4f4f (Linux swap)',
    );
  });

  it('refuses an extended partition, which holds no filesystem', () => {
    expect(() => selectPartition(dos, 3, 'disk base.qcow2')).toThrow(
      /^Partition 3 on disk base\.qcow2 is an extended partition \(type 5\), a container for logical partitions that holds no filesystem itself\. Partitions on disk base\.qcow2 \(dos\):\n/,
    );
  });

  it('asks for rootPartition when several partitions are Linux', () => {
    expect(() => selectRootPartition(dos, undefined, 'disk base.qcow2')).toThrow(
      'Disk base.qcow2 has 3 Linux partitions (1, 2, 5), so vmlb cannot tell which holds the root filesystem; ' +
        'set "rootPartition" in image.json to its number. Partitions on disk base.qcow2:\n' +
        '  1  8 MiB at 1 MiB  type 83 (Linux)  bootable\n' +
        '  2  8 MiB at 9 MiB  type 83 (Linux)\n' +
        '  3  47 MiB at 17 MiB  type 5 (Extended)\n' +
        '  5  8 MiB at 18 MiB  type 83 (Linux)\n' +
        '  6  37 MiB at 27 MiB  type 82 (Linux swap)',
    );
  });

  it('says so when no partition is Linux', () => {
    expect(() => selectRootPartition(noLinux, undefined, 'disk base.qcow2')).toThrow(
      'Disk base.qcow2 has no Linux partition (MBR type 83 or a GPT Linux filesystem/root type) in its dos partition table; ' +
        'set "rootPartition" in image.json to the number of the partition that holds the root filesystem. Partitions on disk base.qcow2:\n' +
        '  1  8 MiB at 1 MiB  type c (W95 FAT32 (LBA))\n' +
        '  2  23 MiB at 9 MiB  type 82 (Linux swap)',
    );
  });

  it('refuses a partition number on a disk without a partition table', () => {
    expect(selectRootPartition(none)).toEqual({ start: 0, size: 16 * MiB });
    expect(() => selectRootPartition(none, 1, 'disk base.qcow2')).toThrow(
      'rootPartition 1 (image.json) does not exist on disk base.qcow2: it has no partition table (a filesystem or nothing fills the whole disk, 16 MiB). ' +
        'Remove "rootPartition" from image.json to use the whole disk.',
    );
    expect(() => selectPartition(none, 2, 'disk base.qcow2')).toThrow(
      'Partition 2 does not exist on disk base.qcow2: it has no partition table (a filesystem or nothing fills the whole disk, 16 MiB).',
    );
  });

  it('refuses partition numbers that are not whole numbers from 1', () => {
    expect(() => selectPartition(dos, 0, 'disk base.qcow2')).toThrow('Partition number must be a whole number from 1 up, got 0 (for disk base.qcow2)');
    expect(() => selectRootPartition(dos, 1.5, 'disk base.qcow2')).toThrow('Partition number must be a whole number from 1 up, got 1.5 (for disk base.qcow2)');
  });

  it('says "the disk" when no label is given', () => {
    expect(() => selectPartition(gpt, 4)).toThrow(/^Partition 4 does not exist on the disk\. Partitions on the disk \(gpt\):/);
  });
});
