import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { RemoteBlobStore, TransferOptions } from './store-api';
import { assertSha256, BlobIntegrityError, BlobNotFoundError, BlobStoreError, withContext } from './errors';
import { downloadIntoNewFile, durableWriteStream, fileKind, openFileSource, ProgressReporter, Sha256Meter } from './transfer';

/**
 * A blob store in a directory every machine mounts (NFS and the like):
 * `<root>/sha256/<hex>`, read-only once published. Writers copy into
 * `<root>/.tmp/` and publish with link(2), which is atomic and refuses to
 * replace an existing name, even over NFS, so concurrent uploads of the same
 * layer are safe and readers never see a partial blob.
 */
export class FileBlobStore implements RemoteBlobStore {
  private readonly blobDir: string;
  private readonly temporaryDir: string;

  constructor(
    readonly url: string,
    /** The store's directory, absolute. */
    readonly root: string,
  ) {
    this.blobDir = path.join(root, 'sha256');
    this.temporaryDir = path.join(root, '.tmp');
  }

  /** Where the blob `sha256` is (or would be) in the store. */
  pathOf(sha256: string): string {
    assertSha256(sha256);
    return path.join(this.blobDir, sha256);
  }

  async has(sha256: string): Promise<boolean> {
    const blobPath = this.pathOf(sha256);
    try {
      const stats = await fs.stat(blobPath);
      if (stats.isFile()) return true;
      // Never read: a FIFO would block, /dev/zero would never end.
      throw new BlobStoreError(
        `${this.url}: blob ${sha256} (${blobPath}) is ${fileKind(stats)}, not a regular file; a file store holds only regular files. ` +
          `Delete ${blobPath} from the store so that the next upload of this layer replaces it.`,
        { code: 'ENOTREG' },
      );
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw withContext(`${this.url}: cannot check for blob ${sha256}`, error);
    }
  }

  async upload(sha256: string, file: string, options: TransferOptions = {}): Promise<'uploaded' | 'exists'> {
    const blobPath = this.pathOf(sha256);
    options.signal?.throwIfAborted();
    if (await this.has(sha256)) return 'exists';
    try {
      return await this.copyAndPublish(sha256, file, blobPath, options);
    } catch (error) {
      throw withContext(`${this.url}: upload of ${file} as blob ${sha256} failed`, error);
    }
  }

  async download(sha256: string, destination: string, options: TransferOptions = {}): Promise<{ bytes: number }> {
    const blobPath = this.pathOf(sha256);
    try {
      return await downloadIntoNewFile({ sha256, storeUrl: this.url, blobLocation: blobPath, destination }, () => this.openBlob(sha256, blobPath), options);
    } catch (error) {
      throw withContext(`${this.url}: download of blob ${sha256} into ${destination} failed`, error);
    }
  }

  private async openBlob(sha256: string, blobPath: string) {
    try {
      return await openFileSource(blobPath);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new BlobNotFoundError(`Blob ${sha256} is not in ${this.url} (no file ${blobPath}).`);
      }
      throw error;
    }
  }

  /**
   * Copies `file` into a private temporary name while hashing it, and
   * publishes it only if its bytes are the blob `sha256`. The temporary file
   * is fsynced before the link so a published blob is never a hole after a
   * crash of this machine or the file server.
   */
  private async copyAndPublish(sha256: string, file: string, blobPath: string, options: TransferOptions): Promise<'uploaded' | 'exists'> {
    await fs.mkdir(this.blobDir, { recursive: true });
    await fs.mkdir(this.temporaryDir, { recursive: true });
    const temporary = path.join(this.temporaryDir, `${sha256}.${process.pid}.${randomBytes(6).toString('hex')}`);
    try {
      const copied = await copyHashing(file, temporary, options);
      if (copied.sha256 !== sha256) {
        throw new BlobIntegrityError(
          `${file} is not blob ${sha256}: its ${copied.bytes} bytes have sha256 ${copied.sha256}. Nothing was published to ${this.url}. ` +
            `Upload it under its real sha256 (did the file change after it was hashed?).`,
        );
      }
      await fs.chmod(temporary, 0o444);
      if (!(await linkUnlessExists(temporary, blobPath))) return 'exists';
      await fsyncDirectory(this.blobDir);
      return 'uploaded';
    } finally {
      await fs.rm(temporary, { force: true });
    }
  }
}

/** Copies `source` into the new file `target`, fsynced, and returns the sha256 of the bytes copied. */
async function copyHashing(source: string, target: string, options: TransferOptions): Promise<{ sha256: string; bytes: number }> {
  const input = await openFileSource(source);
  try {
    const output = await fs.open(target, 'wx', 0o600);
    try {
      const progress = new ProgressReporter(input.totalBytes, options.onProgress);
      const meter = new Sha256Meter((bytes) => progress.update(bytes));
      await pipeline(input.stream, meter, durableWriteStream(output), { signal: options.signal });
      progress.finish(meter.bytes);
      return { sha256: meter.sha256, bytes: meter.bytes };
    } finally {
      await output.close();
    }
  } finally {
    input.stream.destroy();
  }
}

/** Publishes `temporary` as `published`; false when another writer published that name first. */
async function linkUnlessExists(temporary: string, published: string): Promise<boolean> {
  try {
    await fs.link(temporary, published);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
}

/** Makes a new directory entry durable. Best effort: some filesystems refuse to fsync a directory. */
async function fsyncDirectory(directory: string): Promise<void> {
  let handle: fs.FileHandle | undefined;
  try {
    handle = await fs.open(directory, 'r');
    await handle.sync();
  } catch {
    // The blob itself is fsynced; losing only its name on a crash means a re-upload, not corruption.
  } finally {
    await handle?.close();
  }
}

/** Opens a file:// store: the directory must exist (a missing NFS mount must not silently become a local folder). */
export async function openFileBlobStore(url: string, root: string): Promise<FileBlobStore> {
  let stats;
  try {
    stats = await fs.stat(root);
  } catch (error) {
    throw withContext(`Blob store ${url}: cannot use ${root}; create the directory (or mount the share) first`, error);
  }
  if (!stats.isDirectory()) {
    throw new BlobStoreError(`Blob store ${url}: ${root} is not a directory. Point the URL at the store's directory.`);
  }
  return new FileBlobStore(url, root);
}
