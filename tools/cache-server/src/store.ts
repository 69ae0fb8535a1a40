import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/**
 * Hashes that may name an entry. Nx sends decimal digit strings; anything
 * with a dot, slash, percent sign or NUL can never reach the filesystem.
 */
const HASH_PATTERN = /^[A-Za-z0-9_-]{1,128}$/;

/** In-progress uploads: same filesystem as the entries, so link() can publish them. */
export const TEMP_DIR_NAME = '.tmp';

/** Entries (and uploads in progress) are readable and writable by the server's user only. */
const ENTRY_MODE = 0o600;

export function isValidHash(candidate: string): boolean {
  return HASH_PATTERN.test(candidate);
}

export class EntryTooLargeError extends Error {
  constructor(
    readonly limitBytes: number,
    readonly receivedBytes: number,
  ) {
    super(`entry is larger than the limit of ${limitBytes} bytes (received ${receivedBytes} bytes so far)`);
  }
}

/** A body that ended without a byte: never published (it would stand for the task's outputs for good). */
export class EmptyEntryError extends Error {
  constructor() {
    super('empty body: a cache entry is never empty');
  }
}

export interface PutResult {
  /** false: an entry with this hash already existed (possibly published by a concurrent PUT). */
  published: boolean;
  bytes: number;
}

export interface OpenEntry {
  file: fs.FileHandle;
  size: number;
}

/**
 * Entries live flat in one directory as `<dir>/<hash>`, immutable once
 * published. Uploads are written under `<dir>/.tmp/` and hard-linked into
 * place, so a reader sees either no entry or a complete one.
 */
export class CacheStore {
  private constructor(
    readonly dir: string,
    private readonly tempDir: string,
    private knownEntries: number,
  ) {}

  static async open(dir: string): Promise<CacheStore> {
    const root = path.resolve(dir);
    const tempDir = path.join(root, TEMP_DIR_NAME);
    // Entries are build outputs: readable by the server's user only. An existing folder is tightened too.
    await fs.mkdir(tempDir, { recursive: true, mode: 0o700 });
    await fs.chmod(root, 0o700);
    await fs.chmod(tempDir, 0o700);
    // Whatever is left in .tmp belongs to uploads a previous run never finished.
    await removeDirectoryContents(tempDir);
    return new CacheStore(root, tempDir, await countEntries(root));
  }

  /** Entries found at startup plus those published since (other processes' changes are not seen). */
  get entryCount(): number {
    return this.knownEntries;
  }

  async has(hash: string): Promise<boolean> {
    try {
      await fs.stat(this.entryPath(hash));
      return true;
    } catch (error) {
      if (isNotFound(error)) return false;
      throw error;
    }
  }

  /** The entry opened for reading, or undefined on a miss. The caller closes the file. */
  async openEntry(hash: string): Promise<OpenEntry | undefined> {
    let file: fs.FileHandle;
    try {
      file = await fs.open(this.entryPath(hash), 'r');
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
    try {
      const stats = await file.stat();
      if (stats.isFile()) return { file, size: stats.size };
    } catch (error) {
      await file.close();
      throw error;
    }
    await file.close();
    return undefined;
  }

  /**
   * Streams `body` into a temporary file and publishes it under `hash`
   * unless an entry already exists. Throws EntryTooLargeError once more
   * than `maxBytes` arrive, or whatever the body or the disk throws; in
   * every case the temporary file is gone when this returns. `received`
   * counts the body bytes as they arrive, also for a failed upload.
   */
  async put(hash: string, body: Readable, maxBytes: number, received = { bytes: 0 }): Promise<PutResult> {
    const finalPath = this.entryPath(hash);
    const tempPath = path.join(this.tempDir, `${hash}.${process.pid}.${randomBytes(8).toString('hex')}`);
    async function* countAndLimit(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
      for await (const chunk of source) {
        received.bytes += chunk.length;
        if (received.bytes > maxBytes) throw new EntryTooLargeError(maxBytes, received.bytes);
        yield chunk;
      }
    }
    // Created before anything can fail, so the cleanup below always finds it.
    const file = await fs.open(tempPath, 'wx', ENTRY_MODE);
    try {
      // pipeline() keeps backpressure end to end: the socket is read only as
      // fast as the disk takes the data, so memory use does not grow with the
      // entry. It resolves once the stream has closed the file; `flush` fsyncs
      // it first, so the data is on disk before the entry's name is and a
      // crash leaves an entry complete or absent, never truncated.
      await pipeline(body, countAndLimit, file.createWriteStream({ flush: true }));
      if (received.bytes === 0) throw new EmptyEntryError();
      const published = await linkUnlessExists(tempPath, finalPath);
      if (published) this.knownEntries += 1;
      return { published, bytes: received.bytes };
    } finally {
      await fs.rm(tempPath, { force: true });
    }
  }

  private entryPath(hash: string): string {
    // Callers validate first; this is the last line of defence before the filesystem.
    if (!isValidHash(hash)) throw new Error(`invalid cache hash ${JSON.stringify(hash)}`);
    return path.join(this.dir, hash);
  }
}

/** link() never replaces an existing name, so of two concurrent PUTs exactly one publishes. */
async function linkUnlessExists(existingPath: string, newPath: string): Promise<boolean> {
  try {
    await fs.link(existingPath, newPath);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
}

async function removeDirectoryContents(dir: string): Promise<void> {
  for (const name of await fs.readdir(dir)) {
    await fs.rm(path.join(dir, name), { recursive: true, force: true });
  }
}

// Streams the directory listing instead of loading every name at once.
async function countEntries(dir: string): Promise<number> {
  let count = 0;
  for await (const entry of await fs.opendir(dir)) {
    if (entry.isFile() && isValidHash(entry.name)) count += 1;
  }
  return count;
}

function isNotFound(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}
