import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { run } from '../lib/util/exec';
import { readPartitionTable } from '../lib/disk/partition-table';
import type { Partition, PartitionTable } from '../lib/disk/partition-types';

/**
 * Disks for the partition specs: sparse files partitioned by the real
 * sfdisk, and a check that a table we read says what `sfdisk --json` says.
 */

export const MiB = 1024 * 1024;

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

/** A scratch folder for one spec file's disks (made before its tests, removed after), and how to make a disk in it. */
export function scratchDisks(prefix: string) {
  let workDir = '';
  beforeAll(() => {
    workDir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
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
  return {
    /** The scratch folder of the current spec file. */
    get dir(): string {
      return workDir;
    },
    makeDisk,
    /** A disk made by sfdisk and its table as read, both ready before the tests of the calling describe block. */
    readBeforeAll(name: string, bytes: number, script: string): { disk: string; table: PartitionTable } {
      const made = { disk: '', table: { type: 'none', sectorSize: 512, diskSize: 0, partitions: [] } as PartitionTable };
      beforeAll(async () => {
        made.disk = await makeDisk(name, bytes, script);
        made.table = await readPartitionTable(made.disk);
      });
      return made;
    },
  };
}

/** Overwrites the bytes at `offset` of a disk file (to damage or alter its tables). */
export function writeAt(file: string, offset: number, bytes: Buffer): void {
  const handle = fs.openSync(file, 'r+');
  try {
    fs.writeSync(handle, bytes, 0, bytes.length, offset);
  } finally {
    fs.closeSync(handle);
  }
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

/** Expects `table` (read from `device`) to match sfdisk's view of the same disk. */
export async function expectMatchesSfdisk(device: string, table: PartitionTable): Promise<void> {
  const reference = await sfdiskTable(device);
  expect(table.type).toBe(reference.label);
  expect(table.sectorSize).toBe(reference.sectorsize);
  expect(table.partitions.map(({ linux: _linux, ...fields }) => fields)).toEqual(expectedPartitions(reference));
}
