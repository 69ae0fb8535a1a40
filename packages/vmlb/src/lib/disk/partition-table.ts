import * as fs from 'node:fs/promises';
import { run } from '../util/exec';
import { readGpt } from './gpt';
import { MBR_TYPE_GPT_PROTECTIVE, hasMbrSignature, hasValidBootIndicators, readMbrEntries, readMbrPartitions } from './mbr';
import { type DiskReader, type PartitionTable, SECTOR_SIZE } from './partition-types';

/**
 * Reads a disk's partition table straight from the raw bytes of a regular
 * file, a block device or a FUSE-exported raw view of a qcow2, so vmlb can
 * find the root partition's offset without partition device nodes (losetup
 * -P creates none on the machines we build on) and without root-only tools.
 * Only the sectors that hold the tables are read, never the whole disk.
 */

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
