import { closeSync, openSync, readSync, writeSync } from 'node:fs';

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
