import { createHash } from 'node:crypto';
import type { WriteStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { TransferOptions } from './store-api';
import { BlobIntegrityError, BlobStoreError } from './errors';

/**
 * Streaming pieces shared by the blob stores. Layers are gigabytes: bytes
 * only ever pass through in chunks of CHUNK_BYTES, hashed on the way.
 */

/** Read size for layer files: large enough for throughput, small enough to keep memory flat. */
export const CHUNK_BYTES = 1024 * 1024;

/** How often onProgress is called at most while bytes move. */
const PROGRESS_INTERVAL_MS = 250;

/**
 * A pass-through stream that counts and sha256-hashes what flows through it.
 * `checkAtEnd` runs once the last byte has passed and before the stream
 * ends; throwing there fails the stream, so a consumer that only commits on
 * a clean end (an S3 multipart upload) commits nothing.
 */
export class Sha256Meter extends Transform {
  bytes = 0;
  private readonly hash = createHash('sha256');
  private digest: string | undefined;

  constructor(
    private readonly onBytes?: (bytes: number) => void,
    private readonly checkAtEnd?: (sha256: string, bytes: number) => void,
  ) {
    super({ highWaterMark: CHUNK_BYTES });
  }

  /** The sha256 of every byte that passed; only once the stream has ended. */
  get sha256(): string {
    if (this.digest === undefined) throw new Error('Sha256Meter: the sha256 is known only once the stream has ended.');
    return this.digest;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    this.onBytes?.(this.bytes);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    this.digest = this.hash.digest('hex');
    try {
      this.checkAtEnd?.(this.digest, this.bytes);
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }
}

/** Calls onProgress at most every PROGRESS_INTERVAL_MS while bytes move, and once more at the end. */
export class ProgressReporter {
  private lastReportAt = 0;

  constructor(
    private readonly totalBytes: number,
    private readonly onProgress: TransferOptions['onProgress'],
  ) {}

  update(bytesDone: number): void {
    if (!this.onProgress) return;
    const now = Date.now();
    if (now - this.lastReportAt < PROGRESS_INTERVAL_MS) return;
    this.lastReportAt = now;
    this.onProgress(bytesDone, this.totalBytes);
  }

  finish(bytesDone: number): void {
    this.onProgress?.(bytesDone, this.totalBytes);
  }
}

/** A blob's bytes as a store hands them out. */
export interface BlobSource {
  stream: Readable;
  totalBytes: number;
}

/** Opens `file` for streaming; ENOENT and other errors come from open, not later from the stream. */
export async function openFileSource(file: string): Promise<BlobSource> {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever. No effect on regular files.
  const handle = await fs.open(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) {
      throw new BlobStoreError(
        `${file} is ${fileKind(stats)}, not a regular file: blobs and layer files are regular files. Delete it (or fix what put it there).`,
        {
          code: 'ENOTREG',
        },
      );
    }
    const { size } = stats;
    return { stream: handle.createReadStream({ highWaterMark: CHUNK_BYTES }), totalBytes: size };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

/** What a non-regular file is, for messages. */
export function fileKind(stats: import('node:fs').Stats): string {
  if (stats.isFIFO()) return 'a FIFO (named pipe)';
  if (stats.isCharacterDevice()) return 'a character device';
  if (stats.isBlockDevice()) return 'a block device';
  if (stats.isDirectory()) return 'a directory';
  if (stats.isSocket()) return 'a socket';
  return 'something other than a file';
}

/**
 * A write stream into `handle` that fsyncs before it closes the handle, and
 * pipeline() settles only after that close. (A stream with autoClose off
 * would keep a reference on the FileHandle, and FileHandle.close() would
 * then wait for it forever.)
 */
export function durableWriteStream(handle: fs.FileHandle): WriteStream {
  return handle.createWriteStream({ flush: true, highWaterMark: CHUNK_BYTES });
}

/** What is being downloaded where, for the transfer and its messages. */
export interface DownloadRequest {
  sha256: string;
  storeUrl: string;
  /** Where the blob sits in the store, for the message that tells the user to delete a corrupt one. */
  blobLocation: string;
  destination: string;
}

/**
 * Streams a blob into `destination`, a file this call creates exclusively,
 * checking its sha256 on the way, and fsyncs it (the caller files it into a
 * cache that trusts names, so it must not turn out empty after a crash).
 * On any failure, abort included, the destination is removed; an existing
 * destination is reported and left alone (it is not ours).
 */
export async function downloadIntoNewFile(
  request: DownloadRequest,
  openSource: (signal?: AbortSignal) => Promise<BlobSource>,
  options: TransferOptions = {},
): Promise<{ bytes: number }> {
  options.signal?.throwIfAborted();
  const target = await createExclusively(request.destination, request.sha256);
  let complete = false;
  try {
    const source = await openSource(options.signal);
    const limit = options.expectedBytes;
    if (limit !== undefined && source.totalBytes > limit) {
      source.stream.destroy();
      throw oversizedBlobError(request, limit, `the store announces ${source.totalBytes} bytes`);
    }
    const progress = new ProgressReporter(source.totalBytes, options.onProgress);
    const meter = new Sha256Meter((bytes) => progress.update(bytes));
    const cap = new ByteLimit(limit ?? Number.POSITIVE_INFINITY, () => oversizedBlobError(request, limit!, `more than ${limit} bytes arrived`));
    await pipeline(source.stream, cap, meter, durableWriteStream(target), { signal: options.signal });
    if (meter.sha256 !== request.sha256) throw corruptBlobError(request, meter.sha256, meter.bytes);
    progress.finish(meter.bytes);
    complete = true;
    return { bytes: meter.bytes };
  } finally {
    await target.close(); // Already closed by the stream unless it failed to start.
    if (!complete) await fs.rm(request.destination, { force: true });
  }
}

async function createExclusively(destination: string, sha256: string): Promise<fs.FileHandle> {
  try {
    return await fs.open(destination, 'wx', 0o644);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new BlobStoreError(`Cannot download blob ${sha256} into ${destination}: that file already exists. Remove it or download to a new path.`, {
        cause: error,
        code: 'EEXIST',
      });
    }
    throw error;
  }
}

/** Fails the stream as soon as more than `limit` bytes have passed. */
class ByteLimit extends Transform {
  private bytes = 0;

  constructor(
    private readonly limit: number,
    private readonly failure: () => Error,
  ) {
    super({ highWaterMark: CHUNK_BYTES });
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.limit) callback(this.failure());
    else callback(null, chunk);
  }
}

function oversizedBlobError(request: DownloadRequest, expected: number, found: string): BlobIntegrityError {
  return new BlobIntegrityError(
    `Blob ${request.sha256} in ${request.storeUrl} is larger than its ref says (${expected} bytes): ${found}. The download was stopped ` +
      `and ${request.destination} removed. Delete ${request.blobLocation} from the store so that the next upload of this layer replaces it.`,
  );
}

function corruptBlobError(request: DownloadRequest, actual: string, bytes: number): BlobIntegrityError {
  return new BlobIntegrityError(
    `Blob ${request.sha256} in ${request.storeUrl} is corrupt: its ${bytes} bytes have sha256 ${actual}, ` +
      `expected ${request.sha256}. ${request.destination} was removed. Delete ${request.blobLocation} from the store ` +
      `so that the next upload of this layer replaces it.`,
  );
}
