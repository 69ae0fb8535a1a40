import { type DiskReader, type Partition, SECTOR_SIZE } from './partition-types';

/**
 * MBR (dos) partition tables: the four primary entries in the first
 * sector, and the chain of extended boot records that holds the logicals.
 */

const MBR_SIGNATURE_OFFSET = 510;
const MBR_ENTRIES_OFFSET = 446;
const MBR_ENTRY_SIZE = 16;
const MBR_TYPE_LINUX = 0x83;
/** The one entry of the protective MBR in front of a GPT. */
export const MBR_TYPE_GPT_PROTECTIVE = 0xee;
/** Extended partitions: containers of logical partitions, holding no filesystem themselves. */
export const MBR_EXTENDED_TYPES: ReadonlySet<number> = new Set([0x05, 0x0f, 0x85]);
/** A loop in a damaged extended chain must not hang us; real disks have far fewer logicals. */
const MAX_LOGICAL_PARTITIONS = 256;

export interface MbrEntry {
  bootable: boolean;
  type: number;
  /** In sectors, relative to the sector that holds the table (MBR) or to the extended partition (EBR links). */
  relativeStart: number;
  sectors: number;
}

/** Whether a sector ends in the 55 AA of a partition table (or of a boot sector, see hasValidBootIndicators). */
export function hasMbrSignature(sector: Buffer): boolean {
  return sector.length >= SECTOR_SIZE && sector[MBR_SIGNATURE_OFFSET] === 0x55 && sector[MBR_SIGNATURE_OFFSET + 1] === 0xaa;
}

/** A FAT boot sector also ends in 55 AA; like the kernel, trust only entries whose boot flags are 0x00 or 0x80. */
export function hasValidBootIndicators(sector: Buffer): boolean {
  for (let slot = 0; slot < 4; slot += 1) {
    const indicator = sector[MBR_ENTRIES_OFFSET + slot * MBR_ENTRY_SIZE];
    if (indicator !== 0x00 && indicator !== 0x80) return false;
  }
  return true;
}

/** The four entries of an MBR or EBR sector, used or not. */
export function readMbrEntries(sector: Buffer): MbrEntry[] {
  const entries: MbrEntry[] = [];
  for (let slot = 0; slot < 4; slot += 1) {
    const offset = MBR_ENTRIES_OFFSET + slot * MBR_ENTRY_SIZE;
    entries.push({
      bootable: sector[offset] === 0x80,
      type: sector[offset + 4],
      relativeStart: sector.readUInt32LE(offset + 8),
      sectors: sector.readUInt32LE(offset + 12),
    });
  }
  return entries;
}

function isUsed(entry: MbrEntry): boolean {
  return entry.type !== 0 && entry.sectors !== 0;
}

/** The partitions of an MBR disk: its used primaries (1-4), then the logicals of each extended one (from 5). */
export async function readMbrPartitions(disk: DiskReader, primaries: MbrEntry[]): Promise<Partition[]> {
  const partitions: Partition[] = [];
  const extended: MbrEntry[] = [];
  primaries.forEach((entry, slot) => {
    if (!isUsed(entry)) return;
    partitions.push(mbrPartition(slot + 1, entry, entry.relativeStart));
    if (MBR_EXTENDED_TYPES.has(entry.type)) extended.push(entry);
  });
  let nextLogicalNumber = 5;
  for (const container of extended) {
    for (const logical of await readLogicalPartitions(disk, container)) {
      partitions.push(mbrPartition(nextLogicalNumber, logical.entry, logical.startSector));
      nextLogicalNumber += 1;
    }
  }
  return partitions;
}

/**
 * Follows the chain of extended boot records inside an extended partition.
 * Each EBR holds one logical partition (start relative to that EBR) and a
 * link to the next EBR (start relative to the extended partition).
 */
async function readLogicalPartitions(disk: DiskReader, container: MbrEntry): Promise<{ entry: MbrEntry; startSector: number }[]> {
  const logicals: { entry: MbrEntry; startSector: number }[] = [];
  const visited = new Set<number>();
  let ebrSector: number | undefined = container.relativeStart;
  while (ebrSector !== undefined) {
    if (visited.has(ebrSector) || visited.size >= MAX_LOGICAL_PARTITIONS) {
      throw new Error(`${disk.device}: the chain of logical partitions loops back to sector ${ebrSector}; the extended partition table is damaged`);
    }
    visited.add(ebrSector);
    const ebr = await disk.read(ebrSector * SECTOR_SIZE, SECTOR_SIZE);
    // A missing signature ends the chain, as in the kernel: an extended partition may hold no logicals yet.
    if (!hasMbrSignature(ebr)) break;
    const entries = readMbrEntries(ebr);
    const data = entries.find((entry) => isUsed(entry) && !MBR_EXTENDED_TYPES.has(entry.type));
    if (data) logicals.push({ entry: data, startSector: ebrSector + data.relativeStart });
    const link = entries.find((entry) => isUsed(entry) && MBR_EXTENDED_TYPES.has(entry.type));
    ebrSector = link ? container.relativeStart + link.relativeStart : undefined;
  }
  return logicals;
}

function mbrPartition(number: number, entry: MbrEntry, startSector: number): Partition {
  return {
    number,
    start: startSector * SECTOR_SIZE,
    size: entry.sectors * SECTOR_SIZE,
    type: entry.type.toString(16),
    linux: entry.type === MBR_TYPE_LINUX,
    bootable: entry.bootable,
  };
}
