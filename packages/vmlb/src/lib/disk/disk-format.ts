import * as fs from 'node:fs/promises';
import type { SourceFormat } from './qcow2-info';

/**
 * The format of a base disk, read from its own header bytes, never probed by
 * qemu: probing lets a file choose how it is opened, and an image format
 * that names other files (a qcow2 backing file or external data file, vmdk
 * extents or a parent) would make qemu read them, on this host, into the
 * base that the caches then share. Such a base is refused; what qemu would
 * take for an unknown format is imported as raw (its bytes, nothing else).
 */
export interface BaseDiskFormat {
  format: SourceFormat;
}

/** A base disk that names other files: it cannot be imported as it is. */
export class ExternalReferenceError extends Error {}

const HEADER_BYTES = 1024;
/** A vmdk's embedded descriptor is a few hundred bytes; real ones stay far below this. */
const MAX_VMDK_DESCRIPTOR_BYTES = 64 * 1024;
/** qcow2 v3 incompatible feature bit 2: the guest data lives in an external data file. */
const QCOW2_EXTERNAL_DATA_FILE = 1n << 2n;

/**
 * Reads the format of `file` from its magic bytes and refuses one that
 * names other files. `displayName` and `setting` are for the message (the
 * file as the user named it, and where: `base.path in images/x/image.json`).
 */
export async function detectBaseFormat(file: string, displayName: string, setting: string): Promise<BaseDiskFormat> {
  const handle = await fs.open(file, 'r');
  try {
    const header = Buffer.alloc(HEADER_BYTES);
    const { bytesRead } = await handle.read(header, 0, HEADER_BYTES, 0);
    const head = header.subarray(0, bytesRead);
    const refuse = (what: string) => new ExternalReferenceError(externalReferenceMessage(displayName, what, setting));
    if (startsWith(head, 'QFI\xfb')) {
      const version = head.readUInt32BE(4);
      const backingOffset = head.readBigUInt64BE(8);
      if (backingOffset !== 0n) {
        const length = head.readUInt32BE(16);
        const name = await readText(handle, Number(backingOffset), Math.min(length, 1023));
        throw refuse(`a qcow2 image with a backing file (${JSON.stringify(name)})`);
      }
      if (version >= 3 && (head.readBigUInt64BE(72) & QCOW2_EXTERNAL_DATA_FILE) !== 0n) {
        throw refuse('a qcow2 image whose data is in an external data file (data-file)');
      }
      return { format: 'qcow2' };
    }
    if (startsWith(head, 'KDMV')) {
      // A sparse vmdk (monolithicSparse, streamOptimized) is its own one extent; its
      // embedded descriptor can still name a parent, which qemu opens as a backing file.
      const descriptorSector = Number(head.readBigUInt64LE(28));
      const descriptorSectors = Number(head.readBigUInt64LE(36));
      const descriptor =
        descriptorSector > 0 ? await readText(handle, descriptorSector * 512, Math.min(descriptorSectors * 512, MAX_VMDK_DESCRIPTOR_BYTES)) : '';
      const parent = /^\s*parentFileNameHint\s*=\s*"?([^"\n]*)"?/m.exec(descriptor);
      if (parent) throw refuse(`a vmdk image with a parent (backing) file (${JSON.stringify(parent[1])})`);
      return { format: 'vmdk' };
    }
    if (startsWith(head, 'COWD') || /^\s*#\s*Disk\s*Descriptor/i.test(head.toString('latin1')) || /^\s*createType\s*=/m.test(head.toString('latin1'))) {
      // A text descriptor keeps the disk's data in extent files it names (any path, even a device).
      throw refuse('a vmdk descriptor whose data is in extent files it names (or an old VMware format)');
    }
    if (startsWith(head, 'QED\0')) throw refuse('a qed image, which may name a backing file');
    if (startsWith(head, 'vhdxfile')) return { format: 'vhdx' };
    if (startsWith(head, 'conectix')) return { format: 'vpc' };
    if (head.length >= 68 && head.readUInt32LE(64) === 0xbeda107f) return { format: 'vdi' };
    return { format: 'raw' };
  } finally {
    await handle.close();
  }
}

export function externalReferenceMessage(displayName: string, what: string, setting: string): string {
  return (
    `${displayName} is ${what}: vmlb imports standalone disks only, since opening it would read another file on this host into the base, ` +
    `which the caches then share. Flatten it first, on a machine that has the files it names: qemu-img convert -O qcow2 <in> <out>, ` +
    `and point ${setting} at the result.`
  );
}

function startsWith(bytes: Buffer, magic: string): boolean {
  return bytes.length >= magic.length && bytes.subarray(0, magic.length).equals(Buffer.from(magic, 'latin1'));
}

async function readText(handle: fs.FileHandle, offset: number, length: number): Promise<string> {
  if (!Number.isSafeInteger(offset) || length <= 0) return '';
  const buffer = Buffer.alloc(length);
  const { bytesRead } = await handle.read(buffer, 0, length, offset);
  return buffer
    .subarray(0, bytesRead)
    .toString('utf8')
    .replace(/\0[\s\S]*$/, '');
}
