import { existsSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { run } from '../util/exec';

/** The image's disk as block devices a bootloader can probe (`# disk-devices`): the whole disk and each partition, by number, as host device paths. */
export interface DiskDevices {
  /** e.g. /dev/loop3 */
  disk: string;
  /** e.g. 1 → /dev/loop3p1 */
  partitions: Map<number, string>;
}

/** How long the kernel gets to list a partitioned loop device's partitions. */
const PARTITION_SCAN_TIMEOUT_MS = 5_000;

/**
 * The partition devices of a loop device attached with partition scanning,
 * for the partitions the table lists, as the kernel's devtmpfs shows them
 * (`/dev/loop3p1`). The root filesystem is then mounted from that path, and
 * the sandbox's /dev gets the same names: grub-probe reads the mount's source
 * path, resolves it inside the chroot, and finds the disk through sysfs.
 */
export async function waitForPartitionDevices(loop: string, partitionNumbers: readonly number[]): Promise<DiskDevices> {
  const device = (number: number) => `${loop}p${number}`;
  const missing = () => partitionNumbers.filter((number) => !isBlockDevice(device(number)));
  const deadline = Date.now() + PARTITION_SCAN_TIMEOUT_MS;
  let rescanned = false;
  while (missing().length) {
    if (Date.now() > deadline) {
      throw new Error(
        `No device appeared for partition ${missing().join(', ')} of ${loop} within ${PARTITION_SCAN_TIMEOUT_MS / 1000} s, so # disk-devices cannot expose them. ` +
          `It needs loop devices that scan partitions (cat /sys/block/${path.basename(loop)}/loop/partscan) and /dev as the kernel's devtmpfs (findmnt /dev).`,
      );
    }
    // A scan can race the attach; asking once more settles it.
    if (!rescanned) await run('partx', ['--add', loop], { reject: false });
    rescanned = true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { disk: loop, partitions: new Map(partitionNumbers.map((number) => [number, device(number)])) };
}

function isBlockDevice(file: string): boolean {
  return existsSync(file) && statSync(file).isBlockDevice();
}
