import { closeSync, openSync, readSync, writeSync } from 'node:fs';

/** Writes `bytes` over a file at `offset`, in place: a disk or a cache damaging it, with its size unchanged. */
export function overwriteBytes(file: string, offset: number, bytes: Uint8Array): void {
  const handle = openSync(file, 'r+');
  try {
    writeSync(handle, bytes, 0, bytes.length, offset);
  } finally {
    closeSync(handle);
  }
}

/** Overwrites `length` bytes of a file at `offset` with zeros, in place. */
export function zeroBytes(file: string, offset: number, length: number): void {
  overwriteBytes(file, offset, Buffer.alloc(length));
}

/** Inverts one byte of a file in place: a disk or a cache damaging it, with its size unchanged. */
export function flipByte(file: string, offset: number): void {
  const handle = openSync(file, 'r+');
  try {
    const byte = Buffer.alloc(1);
    readSync(handle, byte, 0, 1, offset);
    byte[0] ^= 0xff;
    writeSync(handle, byte, 0, 1, offset);
  } finally {
    closeSync(handle);
  }
}
