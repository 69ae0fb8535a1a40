/** What every blob store (file://, s3://) offers, and the options of a transfer. */

export interface TransferOptions {
  /** Called as bytes move (at most every 250 ms), and once with the total at the end. */
  onProgress?: (bytesDone: number, totalBytes: number) => void;
  signal?: AbortSignal;
  /** (download) The blob's size as its ref says: more bytes than this fail the download at once. */
  expectedBytes?: number;
}

/** An upload's outcome: stored, already there, or stored over a remnant of that many bytes (an upload cut off half-way). */
export type UploadOutcome = 'uploaded' | 'exists' | { replaced: number };

export interface RemoteBlobStore {
  /** As configured, for messages: "file:///srv/blobs" or "s3://bucket/prefix". */
  readonly url: string;
  has(sha256: string): Promise<boolean>;
  /** Uploads `file` (whose bytes have this sha256) unless the store has it whole (an object of another length there is replaced). Streams; never buffers the whole file. */
  upload(sha256: string, file: string, options?: TransferOptions): Promise<UploadOutcome>;
  /**
   * Streams the blob into `destination` (a new file, created exclusively: fail if it exists), computing sha256
   * on the way. On a mismatch throws BlobIntegrityError (message names the store url, expected and actual sha256)
   * and removes `destination`; on any other failure or abort also removes it. Missing blob: BlobNotFoundError.
   */
  download(sha256: string, destination: string, options?: TransferOptions): Promise<{ bytes: number }>;
}
