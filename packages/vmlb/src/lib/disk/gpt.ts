import * as zlib from 'node:zlib';
import { type DiskReader, type Partition, SECTOR_SIZE } from './partition-types';

/**
 * GPT partition tables: the header at sector 1 (or its backup at the end
 * of the disk) and the array of partition entries it points to.
 */

const GPT_SIGNATURE = 'EFI PART';
const GPT_MIN_HEADER_SIZE = 92;
const GPT_MIN_ENTRY_SIZE = 128;
/** Refuse absurd entry arrays from a damaged header instead of allocating them (128 entries × 128 bytes is usual). */
const GPT_MAX_ENTRIES_BYTES = 4 * 1024 * 1024;
const GPT_NAME_OFFSET = 56;
const GPT_NAME_BYTES = 72;
const GPT_ATTRIBUTE_LEGACY_BIOS_BOOTABLE = 1n << 2n;

/** The type GUID of a GPT Linux filesystem partition. */
export const GPT_LINUX_FILESYSTEM = '0fc63daf-8483-4772-8e79-3d69d8477de4';
/** Type GUIDs that say "a Linux filesystem lives here" (Discoverable Partitions Specification root types included). */
const GPT_LINUX_TYPES: ReadonlySet<string> = new Set([
  GPT_LINUX_FILESYSTEM,
  '4f68bce3-e8cd-4db1-96e7-fbcaf984b709', // root x86-64
  '44479540-f297-41b2-9af7-d131d5f0458a', // root x86
  'b921b045-1df0-41c3-af44-4c6f280d3fae', // root arm64
]);

interface GptHeader {
  entriesLba: number;
  entryCount: number;
  entrySize: number;
  entriesCrc: number;
}

/** The partitions of a GPT disk, from the primary header or, when it is damaged, the backup one. */
export async function readGpt(disk: DiskReader): Promise<Partition[]> {
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
  const reversed = (start: number, end: number) =>
    Buffer.from(bytes.subarray(offset + start, offset + end))
      .reverse()
      .toString('hex');
  return `${reversed(0, 4)}-${reversed(4, 6)}-${reversed(6, 8)}-${hex(8, 10)}-${hex(10, 16)}`;
}

/** A 64-bit LBA as a number of sectors, or undefined when the byte offset would not fit a double exactly. */
function safeNumber(value: bigint): number | undefined {
  return value * BigInt(SECTOR_SIZE) <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : undefined;
}
