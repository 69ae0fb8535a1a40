import * as fs from 'node:fs';
import * as path from 'node:path';
import { readPartitionTable } from './partition-table';
import { MiB, expectMatchesSfdisk, scratchDisks, writeAt } from '../../testing/sfdisk-disks';

// Every disk here is a sparse file partitioned by the real sfdisk, and every
// table we read is compared with what `sfdisk --json` says about the same disk.

const disks = scratchDisks('vmlb-gpt-');
const { makeDisk } = disks;

describe('readPartitionTable on a GPT disk', () => {
  const gpt = disks.readBeforeAll(
    'gpt.img',
    64 * MiB,
    'label: gpt\n' +
      'size=8M,type=U,name="EFI system"\n' +
      'size=16M,type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709,name="rööt ✓",attrs="LegacyBIOSBootable"\n' +
      'type=S\n',
  );

  it('matches sfdisk field for field: GUIDs, UTF-16 names, attributes', async () => {
    await expectMatchesSfdisk(gpt.disk, gpt.table);
    expect(gpt.table.partitions.map((partition) => partition.name)).toEqual(['EFI system', 'rööt ✓', undefined]);
    expect(gpt.table.partitions[1].type).toBe('4f68bce3-e8cd-4db1-96e7-fbcaf984b709');
  });

  it('marks the Linux root type as Linux and nothing else', () => {
    expect(gpt.table.partitions.map((partition) => partition.linux)).toEqual([false, true, false]);
  });

  it('reads an entry array of any length from the header and keeps entry numbers across gaps', async () => {
    const gapped = await makeDisk(
      'gpt-gap.img',
      32 * MiB,
      'label: gpt\ntable-length: 32\n' +
        `${path.join(disks.dir, 'gpt-gap.img')}2 : start=2048,size=4M,type=L,name="two"\n` +
        `${path.join(disks.dir, 'gpt-gap.img')}7 : start=20480,size=4M,type=L\n`,
    );
    const gappedTable = await readPartitionTable(gapped);
    await expectMatchesSfdisk(gapped, gappedTable);
    expect(gappedTable.partitions.map((partition) => partition.number)).toEqual([2, 7]);
  });

  it('falls back to the backup header at the end of the disk when the primary one is damaged', async () => {
    const damaged = path.join(disks.dir, 'gpt-damaged.img');
    fs.copyFileSync(gpt.disk, damaged);
    writeAt(damaged, 512, Buffer.alloc(512));
    const damagedTable = await readPartitionTable(damaged);
    expect(damagedTable).toEqual(gpt.table);
    await expectMatchesSfdisk(damaged, damagedTable);
  });

  it('says so when neither GPT header is valid', async () => {
    const broken = path.join(disks.dir, 'gpt-broken.img');
    fs.copyFileSync(gpt.disk, broken);
    writeAt(broken, 512, Buffer.alloc(512));
    writeAt(broken, 64 * MiB - 512, Buffer.alloc(512));
    await expect(readPartitionTable(broken)).rejects.toThrow(
      `${broken} has a protective MBR (type ee) but no valid GPT: ` +
        'primary GPT header (sector 1): no "EFI PART" signature; backup GPT header (sector 131071): no "EFI PART" signature',
    );
  });
});
