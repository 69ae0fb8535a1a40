import { isSha256 } from '../cache-identity/digest';

/** The store has no blob under the sha256 asked for. */
export class BlobNotFoundError extends Error {
  override readonly name = 'BlobNotFoundError';
}

/** Bytes whose sha256 is not the one they were stored or offered under. */
export class BlobIntegrityError extends Error {
  override readonly name = 'BlobIntegrityError';
}

/**
 * A failure already described with the store, the operation and the fix;
 * passed on as it is rather than wrapped again.
 */
export class BlobStoreError extends Error {
  override readonly name = 'BlobStoreError';

  constructor(message: string, options: { cause?: unknown; code?: string } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    if (options.code !== undefined) this.code = options.code;
  }

  /** The underlying Node error code (ENOENT, EEXIST, ECONNREFUSED...) or S3 error name, when there is one. */
  code?: string;
}

/** Throws unless `value` is a sha256 as blob stores name blobs: 64 lower-case hex digits. */
export function assertSha256(value: unknown, what = 'blob sha256'): asserts value is string {
  if (typeof value !== 'string' || !isSha256(value)) {
    throw new Error(`Invalid ${what} ${JSON.stringify(value)}: expected 64 lower-case hex digits (the output of sha256sum).`);
  }
}

/**
 * Whether `error` is the rejection of an aborted operation (AbortSignal, stream pipeline or the AWS SDK).
 * By name, not instanceof: Node's own AbortError and DOMException come from another realm under Jest.
 */
export function isAbortError(error: unknown): boolean {
  return (error as { name?: unknown } | null | undefined)?.name === 'AbortError';
}

/** The message of anything thrown; duck-typed for the same reason as isAbortError. */
export function messageOf(error: unknown): string {
  const message = (error as { message?: unknown } | null | undefined)?.message;
  return typeof message === 'string' ? message : String(error);
}

/** Whether `error` is one of ours (it names the store and blob) or an abort: to be passed on unchanged. */
export function isDescribed(error: unknown): error is Error {
  // Ours are created in this realm, so instanceof is right for them.
  return error instanceof BlobNotFoundError || error instanceof BlobIntegrityError || error instanceof BlobStoreError || isAbortError(error);
}

/**
 * Prefixes a low-level failure (a Node fs error, an SDK error) with what the
 * store was doing, so the user sees which store and which blob. Our own
 * errors and aborts already say that (or must stay recognisable as aborts),
 * so they pass through unchanged. The original stays as `cause` and its
 * `code` is kept for callers that branch on it.
 */
export function withContext(context: string, error: unknown): Error {
  if (isDescribed(error)) return error;
  const code = (error as { code?: unknown } | null | undefined)?.code;
  return new BlobStoreError(`${context}: ${messageOf(error)}`, { cause: error, code: typeof code === 'string' ? code : undefined });
}
