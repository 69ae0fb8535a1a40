import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { run } from '../util/exec';
import { type Partition, type PartitionTable, readPartitionTable, selectPartition, selectRootPartition } from './partition-table';

// Every disk here is a sparse file partitioned by the real sfdisk, and every
// table we read is compared with what `sfdisk --json` says about the same disk.

const MiB = 1024 * 1024;

interface SfdiskPartition {
  node: string;
  start: number;
  size: number;
  type: string;
  bootable?: boolean;
  uuid?: string;
  name?: string;
  attrs?: string;
}

interface SfdiskTable {
  label: 'dos' | 'gpt';
  sectorsize: number;
  partitions?: SfdiskPartition[];
}

let workDir: string;

beforeAll(() => {
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmlb-partition-table-'));
});

afterAll(() => {
  fs.rmSync(workDir, { recursive: true, force: true });
});

/** A sparse file of `bytes`, partitioned by sfdisk from `script` when one is given. */
async function makeDisk(name: string, bytes: number, script?: string): Promise<string> {
  const disk = path.join(workDir, name);
  await run('truncate', ['-s', String(bytes), disk]);
  if (script !== undefined) {
    await run('sfdisk', ['--quiet', '--no-reread', '--no-tell-kernel', disk], { input: script });
  }
  return disk;
}

async function sfdiskTable(device: string): Promise<SfdiskTable> {
  const { stdout } = await run('sfdisk', ['--json', device]);
  return (JSON.parse(stdout) as { partitiontable: SfdiskTable }).partitiontable;
}

/** sfdisk's view in our terms: every field sfdisk reports, in bytes and lower case. */
function expectedPartitions(table: SfdiskTable): Omit<Partition, 'linux'>[] {
  return (table.partitions ?? []).map((partition) => {
    const numberMatch = /(\d+)$/.exec(partition.node);
    if (!numberMatch) throw new Error(`sfdisk node without a number: ${partition.node}`);
    return {
      number: Number(numberMatch[1]),
      start: partition.start * table.sectorsize,
      size: partition.size * table.sectorsize,
      type: partition.type.toLowerCase(),
      bootable: table.label === 'dos' ? partition.bootable === true : (partition.attrs ?? '').includes('LegacyBIOSBootable'),
      ...(partition.name !== undefined ? { name: partition.name } : {}),
      ...(partition.uuid !== undefined ? { uuid: partition.uuid.toLowerCase() } : {}),
    };
  });
}

async function expectMatchesSfdisk(device: string, table: PartitionTable): Promise<void> {
  const reference = await sfdiskTable(device);
  expect(table.type).toBe(reference.label);
  expect(table.sectorSize).toBe(reference.sectorsize);
  expect(table.partitions.map(({ linux: _linux, ...fields }) => fields)).toEqual(expectedPartitions(reference));
}

describe('readPartitionTable on an MBR (dos) disk', () => {
  let disk: string;
  let table: PartitionTable;

  beforeAll(async () => {
    // Two primaries, then an extended partition holding a Linux and a swap logical.
    disk = await makeDisk('dos.img', 64 * MiB, 'label: dos\nsize=8M,type=83,bootable\nsize=8M,type=83\ntype=5\nsize=8M,type=83\ntype=82\n');
    table = await readPartitionTable(disk);
  });

  it('matches sfdisk field for field, logicals numbered from 5', async () => {
    await expectMatchesSfdisk(disk, table);
    expect(table.partitions.map((partition) => partition.number)).toEqual([1, 2, 3, 5, 6]);
  });

  it('reports the disk size and marks only type 83 as Linux', () => {
    expect(table.diskSize).toBe(64 * MiB);
    expect(table.partitions.map((partition) => [partition.type, partition.linux])).toEqual([
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

describe('readPartitionTable on a GPT disk', () => {
  let disk: string;
  let table: PartitionTable;

  beforeAll(async () => {
    disk = await makeDisk(
      'gpt.img',
      64 * MiB,
      'label: gpt\n' +
        'size=8M,type=U,name="EFI system"\n' +
        'size=16M,type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709,name="rööt ✓",attrs="LegacyBIOSBootable"\n' +
        'type=S\n',
    );
    table = await readPartitionTable(disk);
  });

  it('matches sfdisk field for field: GUIDs, UTF-16 names, attributes', async () => {
    await expectMatchesSfdisk(disk, table);
    expect(table.partitions.map((partition) => partition.name)).toEqual(['EFI system', 'rööt ✓', undefined]);
    expect(table.partitions[1].type).toBe('4f68bce3-e8cd-4db1-96e7-fbcaf984b709');
  });

  it('marks the Linux root type as Linux and nothing else', () => {
    expect(table.partitions.map((partition) => partition.linux)).toEqual([false, true, false]);
  });

  it('reads an entry array of any length from the header and keeps entry numbers across gaps', async () => {
    const gapped = await makeDisk(
      'gpt-gap.img',
      32 * MiB,
      'label: gpt\ntable-length: 32\n' +
        `${path.join(workDir, 'gpt-gap.img')}2 : start=2048,size=4M,type=L,name="two"\n` +
        `${path.join(workDir, 'gpt-gap.img')}7 : start=20480,size=4M,type=L\n`,
    );
    const gappedTable = await readPartitionTable(gapped);
    await expectMatchesSfdisk(gapped, gappedTable);
    expect(gappedTable.partitions.map((partition) => partition.number)).toEqual([2, 7]);
  });

  it('falls back to the backup header at the end of the disk when the primary one is damaged', async () => {
    const damaged = path.join(workDir, 'gpt-damaged.img');
    fs.copyFileSync(disk, damaged);
    const handle = fs.openSync(damaged, 'r+');
    try {
      fs.writeSync(handle, Buffer.alloc(512), 0, 512, 512);
    } finally {
      fs.closeSync(handle);
    }
    const damagedTable = await readPartitionTable(damaged);
    expect(damagedTable).toEqual(table);
    await expectMatchesSfdisk(damaged, damagedTable);
  });

  it('says so when neither GPT header is valid', async () => {
    const broken = path.join(workDir, 'gpt-broken.img');
    fs.copyFileSync(disk, broken);
    const handle = fs.openSync(broken, 'r+');
    try {
      fs.writeSync(handle, Buffer.alloc(512), 0, 512, 512);
      fs.writeSync(handle, Buffer.alloc(512), 0, 512, 64 * MiB - 512);
    } finally {
      fs.closeSync(handle);
    }
    await expect(readPartitionTable(broken)).rejects.toThrow(
      `${broken} has a protective MBR (type ee) but no valid GPT: ` +
        'primary GPT header (sector 1): no "EFI PART" signature; backup GPT header (sector 131071): no "EFI PART" signature',
    );
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
    const handle = fs.openSync(disk, 'r+');
    try {
      fs.writeSync(handle, Buffer.from([0x12]), 0, 1, 446 + 16);
    } finally {
      fs.closeSync(handle);
    }
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
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, path.join(workDir, 'base.qcow2')]);
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', 'base.qcow2', '00_layer.qcow2'], { cwd: workDir });
    mountpoint = path.join(workDir, 'fuse.raw');
    const pidFile = path.join(workDir, 'qsd.pid');
    fs.writeFileSync(mountpoint, '');
    await run('qemu-storage-daemon', [
      '--blockdev', `driver=file,node-name=file0,filename=${path.join(workDir, '00_layer.qcow2')}`,
      '--blockdev', 'driver=qcow2,node-name=disk0,file=file0',
      '--export', `type=fuse,id=export0,node-name=disk0,mountpoint=${mountpoint},writable=off`,
      '--daemonize', '--pidfile', pidFile,
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
