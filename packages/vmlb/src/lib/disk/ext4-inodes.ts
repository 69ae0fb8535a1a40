import { open } from 'node:fs/promises';

/**
 * The inodes of an ext2/3/4 filesystem whose ctime (or deletion time) is at
 * or after a given second, read straight from its inode tables on the block
 * device, in a few large sequential reads instead of one lstat per file.
 *
 * Every change to a file or folder sets its ctime (the kernel sets it, no
 * program can choose it), and adding or removing an entry changes the
 * folder's. So after a layer script, the inodes changed since the script
 * started are a superset of what the script changed: the manifest then
 * only has to look at those paths and re-list those folders, instead of
 * walking the whole root a second time through FUSE.
 *
 * Removed entries are found through their folders, so only inodes in use
 * need reading: each group's table is read up to its last inode in use.
 *
 * The device is read while the filesystem is mounted. The kernel keeps
 * ext4's metadata in the block device's page cache, which is what a
 * buffered read of the device returns, so the tables read are the current
 * ones once the filesystem has been synced (syncfs writes back inodes whose
 * timestamps were only updated in memory, e.g. with lazytime).
 */
export interface ChangedInodes {
  /** Inode numbers changed (or freed) at or after `since`. */
  inodes: Set<number>;
  /** Inodes read from the tables, for reporting. */
  scanned: number;
}

const SUPERBLOCK_OFFSET = 1024;
const EXT_MAGIC = 0xef53;
const INCOMPAT_64BIT = 0x80;
const RO_COMPAT_GDT_CSUM = 0x10;
const RO_COMPAT_METADATA_CSUM = 0x400;
const BG_INODE_UNINIT = 0x1;
/** Largest single read, so that a group with a huge inode table is read in pieces. */
const MAX_READ = 8 << 20;

interface Layout {
  blockSize: number;
  inodesPerGroup: number;
  inodeSize: number;
  groups: number;
  descSize: number;
  gdtOffset: number;
  /** itable_unused is kept only with these features; without them every slot is read. */
  trustsUnused: boolean;
}

/** undefined when the device does not hold an ext2/3/4 filesystem vmlb can read this way. */
export async function changedInodesSince(device: string, sinceSeconds: number): Promise<ChangedInodes | undefined> {
  const handle = await open(device, 'r');
  try {
    const read = async (offset: number, length: number) => {
      const buffer = Buffer.alloc(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await handle.read(buffer, done, length - done, offset + done);
        if (bytesRead === 0) throw new Error(`${device}: unexpected end at byte ${offset + done}`);
        done += bytesRead;
      }
      return buffer;
    };
    const layout = parseSuperblock(await read(SUPERBLOCK_OFFSET, 1024));
    if (!layout) return undefined;
    const descriptors = await read(layout.gdtOffset, layout.groups * layout.descSize);
    const inodes = new Set<number>();
    let scanned = 0;
    for (let group = 0; group < layout.groups; group++) {
      const descriptor = descriptors.subarray(group * layout.descSize, (group + 1) * layout.descSize);
      const flags = descriptor.readUInt16LE(18);
      if (flags & BG_INODE_UNINIT) continue;
      let bitmap = descriptor.readUInt32LE(4);
      let table = descriptor.readUInt32LE(8);
      let unused = descriptor.readUInt16LE(28);
      if (layout.descSize >= 64) {
        bitmap += descriptor.readUInt32LE(0x24) * 2 ** 32;
        table += descriptor.readUInt32LE(0x28) * 2 ** 32;
        unused += descriptor.readUInt16LE(0x32) * 65536;
      }
      // The kernel hands out a group's inodes lowest first, so the slots in
      // use end at the last bit set in its inode bitmap. Slots past it are
      // free; one freed by the script is found through its folder, whose
      // ctime changed when the entry went.
      const inUse = lastSetBit(await read(bitmap * layout.blockSize, Math.ceil(layout.inodesPerGroup / 8))) + 1;
      const used = Math.min(inUse, layout.trustsUnused ? Math.max(0, layout.inodesPerGroup - unused) : layout.inodesPerGroup);
      const perRead = Math.max(1, Math.floor(MAX_READ / layout.inodeSize));
      for (let first = 0; first < used; first += perRead) {
        const count = Math.min(perRead, used - first);
        const slots = await read(table * layout.blockSize + first * layout.inodeSize, count * layout.inodeSize);
        for (let index = 0; index < count; index++) {
          const inode = slots.subarray(index * layout.inodeSize, (index + 1) * layout.inodeSize);
          scanned++;
          if (changedSince(inode, layout.inodeSize, sinceSeconds)) inodes.add(group * layout.inodesPerGroup + first + index + 1);
        }
      }
    }
    return { inodes, scanned };
  } finally {
    await handle.close();
  }
}

/** Index of the highest bit set (bit 0 = first inode of the group), -1 when none is. */
function lastSetBit(bitmap: Buffer): number {
  for (let byte = bitmap.length - 1; byte >= 0; byte--) {
    const value = bitmap[byte];
    if (value) return byte * 8 + (31 - Math.clz32(value));
  }
  return -1;
}

function parseSuperblock(superblock: Buffer): Layout | undefined {
  if (superblock.readUInt16LE(56) !== EXT_MAGIC) return undefined;
  const inodesCount = superblock.readUInt32LE(0);
  const firstDataBlock = superblock.readUInt32LE(20);
  const blockSize = 1024 << superblock.readUInt32LE(24);
  const inodesPerGroup = superblock.readUInt32LE(40);
  const revision = superblock.readUInt32LE(76);
  const inodeSize = revision >= 1 ? superblock.readUInt16LE(88) : 128;
  const incompat = superblock.readUInt32LE(96);
  const roCompat = superblock.readUInt32LE(100);
  const descSize = incompat & INCOMPAT_64BIT ? superblock.readUInt16LE(254) : 32;
  if (!inodesPerGroup || inodeSize < 128 || descSize < 32 || blockSize > 65536) return undefined;
  return {
    blockSize,
    inodesPerGroup,
    inodeSize,
    groups: Math.ceil(inodesCount / inodesPerGroup),
    descSize,
    gdtOffset: (firstDataBlock + 1) * blockSize,
    trustsUnused: (roCompat & (RO_COMPAT_GDT_CSUM | RO_COMPAT_METADATA_CSUM)) !== 0,
  };
}

/** ctime or dtime at or after `since` (seconds); the epoch bits of the extra fields count for dates after 2038. */
function changedSince(inode: Buffer, inodeSize: number, since: number): boolean {
  let ctime = inode.readUInt32LE(0x0c);
  if (inodeSize > 128) {
    const extraSize = inode.readUInt16LE(0x80);
    if (extraSize >= 8) ctime += (inode.readUInt32LE(0x84) & 3) * 2 ** 32;
  }
  if (ctime >= since) return true;
  const dtime = inode.readUInt32LE(0x14);
  return dtime >= since;
}
