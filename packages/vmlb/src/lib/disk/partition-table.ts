import * as fs from 'node:fs/promises';
import * as zlib from 'node:zlib';
import { run } from '../util/exec';
import { formatBytes } from '../util/units';

/**
 * Reads a disk's partition table straight from the raw bytes of a regular
 * file, a block device or a FUSE-exported raw view of a qcow2, so vmlb can
 * find the root partition's offset without partition device nodes (losetup
 * -P creates none on the machines we build on) and without root-only tools.
 * Only the sectors that hold the tables are read, never the whole disk.
 */

/** Bytes per logical sector. vmlb's disks (images, loop devices, FUSE views) always use 512. */
export const SECTOR_SIZE = 512;

export interface Partition {
  /** The number the kernel and sfdisk give it: MBR primaries 1-4, logicals from 5; GPT entry index + 1. */
  number: number;
  /** Offset of the first byte, in bytes from the start of the disk. */
  start: number;
  /** Length in bytes. */
  size: number;
  /** MBR: type byte in lower-case hex as sfdisk prints it ('83', 'ee', '5'); GPT: type GUID in lower case. */
  type: string;
  /** Holds a Linux filesystem by its type: MBR 0x83, or a GPT Linux filesystem or Linux root type. */
  linux: boolean;
  /** MBR: boot indicator 0x80; GPT: the LegacyBIOSBootable attribute (bit 2). */
  bootable?: boolean;
  /** GPT partition name, when it has one. */
  name?: string;
  /** GPT unique partition GUID in lower case (what `root=PARTUUID=` names). */
  uuid?: string;
}

export interface PartitionTable {
  /** 'none': no partition table, as when a filesystem fills the whole disk. */
  type: 'dos' | 'gpt' | 'none';
  sectorSize: typeof SECTOR_SIZE;
  /** Size of the whole disk in bytes. */
  diskSize: number;
  /** In the order sfdisk lists them (by number), extended containers included. */
  partitions: Partition[];
}

/** Where to find a filesystem on a disk. */
export interface PartitionSelection {
  start: number;
  size: number;
  /** Absent when the filesystem fills the whole disk. */
  number?: number;
}

const MBR_SIGNATURE_OFFSET = 510;
const MBR_ENTRIES_OFFSET = 446;
const MBR_ENTRY_SIZE = 16;
const MBR_TYPE_LINUX = 0x83;
const MBR_TYPE_GPT_PROTECTIVE = 0xee;
const MBR_EXTENDED_TYPES: ReadonlySet<number> = new Set([0x05, 0x0f, 0x85]);
/** A loop in a damaged extended chain must not hang us; real disks have far fewer logicals. */
const MAX_LOGICAL_PARTITIONS = 256;

const GPT_SIGNATURE = 'EFI PART';
const GPT_MIN_HEADER_SIZE = 92;
const GPT_MIN_ENTRY_SIZE = 128;
/** Refuse absurd entry arrays from a damaged header instead of allocating them (128 entries × 128 bytes is usual). */
const GPT_MAX_ENTRIES_BYTES = 4 * 1024 * 1024;
const GPT_NAME_OFFSET = 56;
const GPT_NAME_BYTES = 72;
const GPT_ATTRIBUTE_LEGACY_BIOS_BOOTABLE = 1n << 2n;

const GPT_LINUX_FILESYSTEM = '0fc63daf-8483-4772-8e79-3d69d8477de4';
/** Type GUIDs that say "a Linux filesystem lives here" (Discoverable Partitions Specification root types included). */
const GPT_LINUX_TYPES: ReadonlySet<string> = new Set([
  GPT_LINUX_FILESYSTEM,
  '4f68bce3-e8cd-4db1-96e7-fbcaf984b709', // root x86-64
  '44479540-f297-41b2-9af7-d131d5f0458a', // root x86
  'b921b045-1df0-41c3-af44-4c6f280d3fae', // root arm64
]);

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
 * Reads the partition table of `device` (a disk image file, a block device
 * or a FUSE raw export). A protective MBR leads to the GPT, whose backup
 * copy at the end of the disk is used when the primary one is damaged.
 */
export async function readPartitionTable(device: string): Promise<PartitionTable> {
  const handle = await fs.open(device, 'r');
  try {
    const diskSize = await diskSizeOf(device, handle);
    const disk: DiskReader = { device, diskSize, read: (offset, length) => readAt(handle, offset, length) };
    const mbr = await disk.read(0, SECTOR_SIZE);
    if (!hasMbrSignature(mbr) || !hasValidBootIndicators(mbr)) {
      return { type: 'none', sectorSize: SECTOR_SIZE, diskSize, partitions: [] };
    }
    const primaries = readMbrEntries(mbr);
    if (primaries.some((entry) => entry.type === MBR_TYPE_GPT_PROTECTIVE)) {
      return { type: 'gpt', sectorSize: SECTOR_SIZE, diskSize, partitions: await readGpt(disk) };
    }
    return { type: 'dos', sectorSize: SECTOR_SIZE, diskSize, partitions: await readMbrPartitions(disk, primaries) };
  } finally {
    await handle.close();
  }
}

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

interface DiskReader {
  device: string;
  diskSize: number;
  /** Up to `length` bytes at `offset`; shorter at the end of the disk. */
  read(offset: number, length: number): Promise<Buffer>;
}

interface MbrEntry {
  bootable: boolean;
  type: number;
  /** In sectors, relative to the sector that holds the table (MBR) or to the extended partition (EBR links). */
  relativeStart: number;
  sectors: number;
}

async function readAt(handle: fs.FileHandle, offset: number, length: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  let filled = 0;
  // Block devices and FUSE may return fewer bytes than asked; keep reading until full or at the end.
  while (filled < length) {
    const { bytesRead } = await handle.read(buffer, filled, length - filled, offset + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return buffer.subarray(0, filled);
}

async function diskSizeOf(device: string, handle: fs.FileHandle): Promise<number> {
  const stats = await handle.stat({ bigint: true });
  if (stats.isFile()) {
    return Number(stats.size);
  }
  if (!stats.isBlockDevice()) {
    throw new Error(`${device} is neither a disk image file nor a block device`);
  }
  // fstat reports 0 for block devices; sysfs knows their size in 512-byte units whatever their sector size.
  const { major, minor } = splitDeviceNumber(stats.rdev);
  try {
    const sectors = (await fs.readFile(`/sys/dev/block/${major}:${minor}/size`, 'utf8')).trim();
    if (/^\d+$/.test(sectors)) {
      return Number(sectors) * 512;
    }
  } catch {
    // No sysfs (unusual container setups): ask blockdev below.
  }
  const { stdout } = await run('blockdev', ['--getsize64', device]);
  const bytes = Number(stdout.trim());
  if (!Number.isSafeInteger(bytes)) {
    throw new Error(`blockdev --getsize64 ${device} printed ${JSON.stringify(stdout)}, not a size in bytes`);
  }
  return bytes;
}

/** glibc's major()/minor() for a 64-bit dev_t. */
function splitDeviceNumber(rdev: bigint): { major: number; minor: number } {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return { major: Number(major), minor: Number(minor) };
}

function hasMbrSignature(sector: Buffer): boolean {
  return sector.length >= SECTOR_SIZE && sector[MBR_SIGNATURE_OFFSET] === 0x55 && sector[MBR_SIGNATURE_OFFSET + 1] === 0xaa;
}

/** A FAT boot sector also ends in 55 AA; like the kernel, trust only entries whose boot flags are 0x00 or 0x80. */
function hasValidBootIndicators(sector: Buffer): boolean {
  for (let slot = 0; slot < 4; slot += 1) {
    const indicator = sector[MBR_ENTRIES_OFFSET + slot * MBR_ENTRY_SIZE];
    if (indicator !== 0x00 && indicator !== 0x80) return false;
  }
  return true;
}

function readMbrEntries(sector: Buffer): MbrEntry[] {
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

async function readMbrPartitions(disk: DiskReader, primaries: MbrEntry[]): Promise<Partition[]> {
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

interface GptHeader {
  entriesLba: number;
  entryCount: number;
  entrySize: number;
  entriesCrc: number;
}

async function readGpt(disk: DiskReader): Promise<Partition[]> {
  const lastLba = Math.floor(disk.diskSize / SECTOR_SIZE) - 1;
  const problems: string[] = [];
  // The primary header sits at LBA 1; its backup at the last sector, used (as sfdisk does) when the primary is damaged.
  for (const [label, lba] of [
    ['primary GPT header (sector 1)', 1],
    [`backup GPT header (sector ${lastLba})`, lastLba],
  ] as const) {
    if (lba < 1) continue;
    const header = parseGptHeader(await disk.read(lba * SECTOR_SIZE, SECTOR_SIZE));
    if (typeof header === 'string') {
      problems.push(`${label}: ${header}`);
      continue;
    }
    const entries = await disk.read(header.entriesLba * SECTOR_SIZE, header.entryCount * header.entrySize);
    if (entries.length < header.entryCount * header.entrySize) {
      problems.push(`${label}: its partition entries at sector ${header.entriesLba} run past the end of the disk`);
      continue;
    }
    if (zlib.crc32(entries) !== header.entriesCrc) {
      problems.push(`${label}: checksum of its partition entries does not match`);
      continue;
    }
    return parseGptEntries(entries, header);
  }
  throw new Error(`${disk.device} has a protective MBR (type ee) but no valid GPT: ${problems.join('; ')}`);
}

/** The header's fields, or why it is not a valid GPT header. */
function parseGptHeader(sector: Buffer): GptHeader | string {
  if (sector.length < GPT_MIN_HEADER_SIZE || sector.toString('latin1', 0, 8) !== GPT_SIGNATURE) {
    return `no "${GPT_SIGNATURE}" signature`;
  }
  const headerSize = sector.readUInt32LE(12);
  if (headerSize < GPT_MIN_HEADER_SIZE || headerSize > sector.length) {
    return `header size ${headerSize} is out of range`;
  }
  const storedCrc = sector.readUInt32LE(16);
  const zeroedCrc = Buffer.from(sector.subarray(0, headerSize));
  zeroedCrc.writeUInt32LE(0, 16);
  if (zlib.crc32(zeroedCrc) !== storedCrc) {
    return 'header checksum does not match';
  }
  const entriesLba = safeNumber(sector.readBigUInt64LE(72));
  const entryCount = sector.readUInt32LE(80);
  const entrySize = sector.readUInt32LE(84);
  // UEFI requires 128 × 2^n; anything else means we would misread every entry.
  if (entrySize < GPT_MIN_ENTRY_SIZE || (entrySize & (entrySize - 1)) !== 0) {
    return `partition entry size ${entrySize} is not 128 × 2^n bytes`;
  }
  if (entryCount * entrySize > GPT_MAX_ENTRIES_BYTES) {
    return `${entryCount} partition entries of ${entrySize} bytes is implausibly many`;
  }
  if (entriesLba === undefined) {
    return 'partition entries start beyond any disk size';
  }
  return { entriesLba, entryCount, entrySize, entriesCrc: sector.readUInt32LE(88) };
}

function parseGptEntries(entries: Buffer, header: GptHeader): Partition[] {
  const partitions: Partition[] = [];
  for (let index = 0; index < header.entryCount; index += 1) {
    const entry = entries.subarray(index * header.entrySize, (index + 1) * header.entrySize);
    const type = formatGuid(entry, 0);
    if (type === '00000000-0000-0000-0000-000000000000') continue;
    const firstLba = safeNumber(entry.readBigUInt64LE(32));
    const lastLba = safeNumber(entry.readBigUInt64LE(40));
    if (firstLba === undefined || lastLba === undefined || lastLba < firstLba) continue;
    const attributes = entry.readBigUInt64LE(48);
    const name = decodeUtf16Name(entry.subarray(GPT_NAME_OFFSET, GPT_NAME_OFFSET + GPT_NAME_BYTES));
    partitions.push({
      number: index + 1,
      start: firstLba * SECTOR_SIZE,
      size: (lastLba - firstLba + 1) * SECTOR_SIZE,
      type,
      linux: GPT_LINUX_TYPES.has(type),
      bootable: (attributes & GPT_ATTRIBUTE_LEGACY_BIOS_BOOTABLE) !== 0n,
      ...(name ? { name } : {}),
      uuid: formatGuid(entry, 16),
    });
  }
  return partitions;
}

/** UTF-16LE up to the first NUL code unit. */
function decodeUtf16Name(bytes: Buffer): string {
  let end = 0;
  while (end + 1 < bytes.length && (bytes[end] !== 0 || bytes[end + 1] !== 0)) end += 2;
  return bytes.toString('utf16le', 0, end);
}

/** GUIDs are stored mixed-endian: the first three groups little-endian, the last two as bytes in order. */
function formatGuid(bytes: Buffer, offset: number): string {
  const hex = (start: number, end: number) => bytes.subarray(offset + start, offset + end).toString('hex');
  const reversed = (start: number, end: number) => Buffer.from(bytes.subarray(offset + start, offset + end)).reverse().toString('hex');
  return `${reversed(0, 4)}-${reversed(4, 6)}-${reversed(6, 8)}-${hex(8, 10)}-${hex(10, 16)}`;
}

/** A 64-bit LBA as a number of sectors, or undefined when the byte offset would not fit a double exactly. */
function safeNumber(value: bigint): number | undefined {
  return value * BigInt(SECTOR_SIZE) <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : undefined;
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
