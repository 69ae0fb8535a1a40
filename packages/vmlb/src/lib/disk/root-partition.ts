import { formatBytes } from '../util/units';
import { GPT_LINUX_FILESYSTEM } from './gpt';
import { MBR_EXTENDED_TYPES } from './mbr';
import type { PartitionTable } from './partition-types';

/**
 * Choosing the partition a filesystem is mounted from: the root one (the
 * requested number, else the only Linux partition, else the whole disk) or
 * a numbered one, with messages that list the disk's partitions.
 */

/** Where to find a filesystem on a disk. */
export interface PartitionSelection {
  start: number;
  size: number;
  /** Absent when the filesystem fills the whole disk. */
  number?: number;
}

/** Names for the types users meet most, so error messages read as more than hex. */
const TYPE_NAMES: Readonly<Record<string, string>> = {
  '83': 'Linux',
  '82': 'Linux swap',
  '5': 'Extended',
  f: 'W95 Extended (LBA)',
  '85': 'Linux extended',
  '8e': 'Linux LVM',
  fd: 'Linux raid autodetect',
  ef: 'EFI (FAT-12/16/32)',
  ee: 'GPT protective',
  '7': 'HPFS/NTFS/exFAT',
  b: 'W95 FAT32',
  c: 'W95 FAT32 (LBA)',
  [GPT_LINUX_FILESYSTEM]: 'Linux filesystem',
  '4f68bce3-e8cd-4db1-96e7-fbcaf984b709': 'Linux root (x86-64)',
  '44479540-f297-41b2-9af7-d131d5f0458a': 'Linux root (x86)',
  'b921b045-1df0-41c3-af44-4c6f280d3fae': 'Linux root (ARM-64)',
  'c12a7328-f81f-11d2-ba4b-00a0c93ec93b': 'EFI System',
  '21686148-6449-6e6f-744e-656564454649': 'BIOS boot',
  '0657fd6d-a4ab-43c4-84e5-0933c84b4f4f': 'Linux swap',
  'e6d6d379-f507-44c2-a23c-238f2a3df928': 'Linux LVM',
  'a19d880f-05fc-4d3b-a006-743f0f84911e': 'Linux RAID',
  'bc13c2ff-59e6-4262-a352-b275fd6f7172': 'Linux extended boot',
  '933ac7e1-2eb4-4f13-b844-0e14e2aef915': 'Linux home',
  'ebd0a0a2-b9e5-4433-87c0-68b6b72699c7': 'Microsoft basic data',
};

/**
 * The partition that holds the root filesystem: the `requested` one
 * (image.json `rootPartition`), else the only Linux partition, else the
 * whole disk when it has no partition table.
 */
export function selectRootPartition(table: PartitionTable, requested?: number, diskLabel = 'the disk'): PartitionSelection {
  if (requested !== undefined) {
    return findPartition(table, requested, diskLabel, {
      missing: `rootPartition ${requested} (image.json) does not exist on ${diskLabel}`,
      advice: 'Set "rootPartition" in image.json to the number of the partition that holds the root filesystem.',
      noTableAdvice: 'Remove "rootPartition" from image.json to use the whole disk.',
    });
  }
  if (table.type === 'none') {
    return { start: 0, size: table.diskSize };
  }
  const linuxPartitions = table.partitions.filter((partition) => partition.linux);
  if (linuxPartitions.length === 1) {
    const [root] = linuxPartitions;
    return { number: root.number, start: root.start, size: root.size };
  }
  if (linuxPartitions.length > 1) {
    throw new Error(
      `${capitalize(diskLabel)} has ${linuxPartitions.length} Linux partitions (${linuxPartitions.map((partition) => partition.number).join(', ')}), ` +
        `so vmlb cannot tell which holds the root filesystem; set "rootPartition" in image.json to its number. ` +
        `Partitions on ${diskLabel}:\n${describePartitions(table)}`,
    );
  }
  throw new Error(
    `${capitalize(diskLabel)} has no Linux partition (MBR type 83 or a GPT Linux filesystem/root type) in its ${table.type} partition table; ` +
      `set "rootPartition" in image.json to the number of the partition that holds the root filesystem. ` +
      `Partitions on ${diskLabel}:\n${describePartitions(table)}`,
  );
}

/** Partition `number` of the disk, for `# chroot-mount <number> <path>`. */
export function selectPartition(table: PartitionTable, number: number, diskLabel = 'the disk'): PartitionSelection {
  return findPartition(table, number, diskLabel, {
    missing: `Partition ${number} does not exist on ${diskLabel}`,
    advice: '',
    noTableAdvice: '',
  });
}

/** One line per partition (`  2  8 MiB at 9 MiB  type 83 (Linux)  bootable`), for messages. */
export function describePartitions(table: PartitionTable): string {
  if (table.partitions.length === 0) {
    return '  (none)';
  }
  return table.partitions
    .map((partition) => {
      const typeName = TYPE_NAMES[partition.type];
      const parts = [
        `  ${partition.number}`,
        `${formatBytes(partition.size)} at ${formatBytes(partition.start)}`,
        `type ${partition.type}${typeName ? ` (${typeName})` : ''}`,
      ];
      if (partition.name) parts.push(JSON.stringify(partition.name));
      if (partition.bootable) parts.push('bootable');
      return parts.join('  ');
    })
    .join('\n');
}

interface SelectionMessages {
  missing: string;
  advice: string;
  noTableAdvice: string;
}

function findPartition(table: PartitionTable, number: number, diskLabel: string, messages: SelectionMessages): PartitionSelection {
  if (!Number.isSafeInteger(number) || number < 1) {
    throw new Error(`Partition number must be a whole number from 1 up, got ${JSON.stringify(number)} (for ${diskLabel})`);
  }
  if (table.type === 'none') {
    throw new Error(
      `${messages.missing}: it has no partition table (a filesystem or nothing fills the whole disk, ${formatBytes(table.diskSize)}).` +
        (messages.noTableAdvice ? ` ${messages.noTableAdvice}` : ''),
    );
  }
  const partition = table.partitions.find((candidate) => candidate.number === number);
  const listing = `Partitions on ${diskLabel} (${table.type}):\n${describePartitions(table)}`;
  if (!partition) {
    throw new Error(`${messages.missing}. ${listing}${messages.advice ? `\n${messages.advice}` : ''}`);
  }
  if (table.type === 'dos' && MBR_EXTENDED_TYPES.has(Number.parseInt(partition.type, 16))) {
    throw new Error(
      `Partition ${number} on ${diskLabel} is an extended partition (type ${partition.type}), a container for logical partitions that holds no filesystem itself. ` +
        `${listing}${messages.advice ? `\n${messages.advice}` : ''}`,
    );
  }
  return { number: partition.number, start: partition.start, size: partition.size };
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
