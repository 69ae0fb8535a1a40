/**
 * A disk's partition table as vmlb reads it (partition-table, mbr, gpt) and
 * the disk it is read from.
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

/** A disk opened for reading its tables. */
export interface DiskReader {
  device: string;
  diskSize: number;
  /** Up to `length` bytes at `offset`; shorter at the end of the disk. */
  read(offset: number, length: number): Promise<Buffer>;
}
