import { GetObjectCommand, HeadObjectCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { RemoteBlobStore, TransferOptions, UploadOutcome } from './store-api';
import { proxyHttpAgent } from '../util/proxy-env';
import { assertSha256, BlobIntegrityError, BlobNotFoundError, BlobStoreError, isAbortError, isDescribed, messageOf, withContext } from './errors';
import { type BlobSource, downloadIntoNewFile, openFileSource, ProgressReporter, Sha256Meter } from './transfer';

/**
 * A blob store in an S3-compatible bucket: `<prefix>/sha256/<hex>`. This
 * module pulls in the AWS SDK, so blob-store.ts loads it only for s3:// URLs.
 */

/**
 * Multipart part size and how many parts are in flight. lib-storage holds
 * up to PARALLEL_PARTS parts (plus the one being filled) in memory, so an
 * upload buffers about 80 MiB whatever the layer's size; 16 MiB parts allow
 * layers up to 160 GiB within S3's 10,000-part limit.
 */
const PART_BYTES = 16 * 1024 * 1024;
const PARALLEL_PARTS = 4;

/** The region when neither the environment nor the URL says: S3-compatible servers mostly ignore it. */
const DEFAULT_REGION = 'us-east-1';

export class S3BlobStore implements RemoteBlobStore {
  constructor(
    readonly url: string,
    readonly bucket: string,
    /** Key prefix without leading or trailing slash; may be empty. */
    readonly prefix: string,
    /** The SDK client; exposed so callers (and tests) can observe or tune requests. */
    readonly client: S3Client,
    /** Where requests go, for messages: the custom endpoint, or AWS itself. */
    private readonly endpointDescription: string,
  ) {}

  /** The object key of blob `sha256`. */
  keyOf(sha256: string): string {
    assertSha256(sha256);
    return this.prefix ? `${this.prefix}/sha256/${sha256}` : `sha256/${sha256}`;
  }

  async has(sha256: string): Promise<boolean> {
    return (await this.storedSize(sha256)) !== undefined;
  }

  /** The length of the object stored as blob `sha256`; undefined when there is none. */
  private async storedSize(sha256: string): Promise<number | undefined> {
    const key = this.keyOf(sha256);
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return head.ContentLength ?? 0;
    } catch (error) {
      // HEAD responses have no body, so a missing key is only a bare 404.
      if (httpStatusOf(error) === 404) return undefined;
      throw this.requestFailure('HeadObject', key, error);
    }
  }

  async upload(sha256: string, file: string, options: TransferOptions = {}): Promise<UploadOutcome> {
    const key = this.keyOf(sha256);
    options.signal?.throwIfAborted();
    let source: BlobSource;
    try {
      source = await openFileSource(file);
    } catch (error) {
      throw withContext(`${this.url}: cannot upload ${file} as blob ${sha256}`, error);
    }
    // Some S3-compatible servers keep what arrived of a PUT whose client died mid-body: an object of
    // another length under this name is such a remnant, and the upload replaces it rather than trust it.
    const stored = await this.storedSize(sha256).catch((error: unknown) => {
      source.stream.destroy();
      throw error;
    });
    if (stored === source.totalBytes) {
      source.stream.destroy();
      return 'exists';
    }
    if (options.signal?.aborted) {
      // An abort before the listener below is in place would never reach the upload.
      source.stream.destroy();
      options.signal.throwIfAborted();
    }
    const { body, bodyFailure } = this.verifyingBody(source, sha256, file);
    const upload = new Upload({
      client: this.client,
      params: {
        Bucket: this.bucket,
        Key: key,
        Body: body,
        ContentLength: source.totalBytes,
        ContentType: 'application/octet-stream',
        Metadata: { sha256 },
      },
      partSize: PART_BYTES,
      queueSize: PARALLEL_PARTS,
      leavePartsOnError: false,
    });
    // lib-storage reports each part as S3 acknowledges it: the bytes that are really stored.
    const progress = new ProgressReporter(source.totalBytes, options.onProgress);
    upload.on('httpUploadProgress', ({ loaded }) => progress.update(loaded ?? 0));
    const abort = (): void => void upload.abort();
    options.signal?.addEventListener('abort', abort, { once: true });
    try {
      await upload.done();
    } catch (error) {
      const failure = this.uploadFailure(key, file, bodyFailure(), error);
      body.destroy();
      throw failure;
    } finally {
      options.signal?.removeEventListener('abort', abort);
    }
    progress.finish(source.totalBytes);
    return stored === undefined ? 'uploaded' : { replaced: stored };
  }

  async download(sha256: string, destination: string, options: TransferOptions = {}): Promise<{ bytes: number }> {
    const key = this.keyOf(sha256);
    try {
      return await downloadIntoNewFile(
        { sha256, storeUrl: this.url, blobLocation: `s3://${this.bucket}/${key}`, destination },
        (signal) => this.openObject(sha256, key, signal),
        options,
      );
    } catch (error) {
      throw this.requestFailure('download (GetObject)', key, error);
    }
  }

  /**
   * The file's bytes as the upload body, hashed on the way. A mismatch
   * fails the body stream before its end, so lib-storage never completes
   * the upload (and aborts the multipart upload): nothing is published.
   */
  private verifyingBody(source: BlobSource, sha256: string, file: string): { body: Sha256Meter; bodyFailure: () => unknown } {
    const meter = new Sha256Meter(undefined, (actual, bytes) => {
      if (actual !== sha256) {
        throw new BlobIntegrityError(
          `${file} is not blob ${sha256}: its ${bytes} bytes have sha256 ${actual}. Nothing was published to ${this.url}. ` +
            `Upload it under its real sha256 (did the file change after it was hashed?).`,
        );
      }
    });
    // Not awaited: lib-storage consumes `meter`; this carries read errors into it, closes the
    // file either way, and keeps the body's own failure, which lib-storage may report as another.
    let failure: unknown;
    pipeline(source.stream, meter).catch((error: unknown) => {
      failure = error;
    });
    return { body: meter, bodyFailure: () => failure };
  }

  /**
   * What to report when an upload fails. The body's own failure (a sha256
   * mismatch, a read error) comes first: lib-storage reports whatever went
   * wrong last, such as the AbortMultipartUpload it sends after it, which
   * some S3-compatible servers do not implement.
   */
  private uploadFailure(key: string, file: string, bodyFailure: unknown, uploadError: unknown): Error {
    if (bodyFailure === undefined || bodyFailure === uploadError || isAbortError(uploadError)) {
      return this.requestFailure('upload (PutObject / multipart upload)', key, uploadError);
    }
    const primary = withContext(`${this.url}: reading ${file} for the upload of s3://${this.bucket}/${key} failed`, bodyFailure);
    primary.message +=
      ` (Cleaning up the upload then failed too: ${sdkMessageOf(uploadError)}. Parts already sent stay in the bucket ` +
      `until a lifecycle rule for incomplete multipart uploads removes them.)`;
    return primary;
  }

  private async openObject(sha256: string, key: string, signal: AbortSignal | undefined): Promise<BlobSource> {
    let response;
    try {
      response = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal: signal });
    } catch (error) {
      if (isNoSuchKey(error)) {
        throw new BlobNotFoundError(`Blob ${sha256} is not in ${this.url} (no object s3://${this.bucket}/${key}).`);
      }
      throw this.requestFailure('GetObject', key, error);
    }
    if (!(response.Body instanceof Readable)) {
      throw new BlobStoreError(`${this.url}: GetObject ${key} returned no Node.js stream body; this client needs Node.js, not a browser runtime.`);
    }
    return { stream: response.Body, totalBytes: response.ContentLength ?? 0 };
  }

  /** An SDK failure as a message naming the store, the operation, the key, the SDK's words and the likely fix. */
  private requestFailure(operation: string, key: string, error: unknown): Error {
    if (isDescribed(error)) return error;
    const status = httpStatusOf(error);
    const name = (error as { name?: string }).name;
    const code = errorCodeOf(error);
    const described = [status === undefined ? '' : `HTTP ${status}`, name && name !== 'Error' ? name : '', code && code !== name ? code : '']
      .filter(Boolean)
      .join(' ');
    return new BlobStoreError(
      `${this.url}: ${operation} of s3://${this.bucket}/${key} failed${described ? ` (${described})` : ''}: ${sdkMessageOf(error)}.${this.hintFor(status, name, code)}`,
      { cause: error, code: code ?? name },
    );
  }

  private hintFor(status: number | undefined, name: string | undefined, code: string | undefined): string {
    if (name === 'NoSuchBucket') {
      return ` Create bucket ${this.bucket} at ${this.endpointDescription}, or fix the bucket in the store URL.`;
    }
    if (status === 401 || status === 403 || name === 'AccessDenied' || name === 'InvalidAccessKeyId' || name === 'SignatureDoesNotMatch') {
      return (
        ` Check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or AWS_PROFILE) and that they may read and write ` +
        `s3://${this.bucket}/${this.prefix} (also s3:ListBucket: without it S3 answers 403 for a missing blob).`
      );
    }
    if (code && NETWORK_ERROR_CODES.has(code)) {
      return ` Is ${this.endpointDescription} reachable? Set AWS_ENDPOINT_URL_S3 for an S3-compatible server.`;
    }
    return '';
  }
}

const NETWORK_ERROR_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH']);

function httpStatusOf(error: unknown): number | undefined {
  return (error as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
}

/** The errors an AggregateError gathers (one per address tried); duck-typed, as Node creates it in another realm under Jest. */
function innerErrorsOf(error: unknown): unknown[] {
  const errors = (error as { errors?: unknown } | null | undefined)?.errors;
  return Array.isArray(errors) ? errors : [];
}

/**
 * The Node error code of a failure, looking inside AggregateError, and else
 * in the message: the SDK flattens errors it does not recognise as Error
 * (one from another realm, under Jest) into "AWS SDK error wrapper for ...".
 */
function errorCodeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null | undefined)?.code;
  if (typeof code === 'string') return code;
  const inner = innerErrorsOf(error).map(errorCodeOf).find(Boolean);
  return inner ?? [...NETWORK_ERROR_CODES].find((networkCode) => messageOf(error).includes(networkCode));
}

/** The SDK's (or Node's) own words, without a final period: the caller ends the sentence. */
function sdkMessageOf(error: unknown): string {
  const message = messageOf(error);
  const inner = innerErrorsOf(error);
  const words = !message && inner.length ? inner.map(sdkMessageOf).join('; ') : message || String(error);
  return words.replace(/\.+$/, '');
}

function isNoSuchKey(error: unknown): boolean {
  const name = (error as { name?: string } | undefined)?.name;
  return name === 'NoSuchKey' || (httpStatusOf(error) === 404 && name !== 'NoSuchBucket');
}

/** The endpoint the environment names for S3, if any: the service-specific variable first, as the AWS SDKs and CLI do. */
export function s3EndpointFrom(env: NodeJS.ProcessEnv): string | undefined {
  return env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || undefined;
}

/**
 * An S3 client configured the standard AWS way from `env`: region, endpoint
 * and, when `env` has them, static keys; otherwise the SDK's default chain
 * (profiles, SSO, instance roles...).
 */
export function createS3Client(env: NodeJS.ProcessEnv): S3Client {
  const endpoint = s3EndpointFrom(env);
  const config: S3ClientConfig = {
    region: env.AWS_REGION || env.AWS_DEFAULT_REGION || DEFAULT_REGION,
    // MinIO, Ceph, s3rver... serve buckets as paths, not as <bucket>.<host> names.
    ...(endpoint ? { endpoint, forcePathStyle: true } : {}),
    ...(env.AWS_PROFILE ? { profile: env.AWS_PROFILE } : {}),
    ...(Number(env.AWS_MAX_ATTEMPTS) >= 1 ? { maxAttempts: Number(env.AWS_MAX_ATTEMPTS) } : {}),
    // Recent SDKs add CRC checksums (aws-chunked trailers) to every upload, which many
    // S3-compatible servers reject. Blobs are sha256-checked end to end anyway.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  };
  // The SDK ignores https_proxy/http_proxy; this agent honours them (and no_proxy) per request.
  const agent = proxyHttpAgent(env);
  if (agent) config.requestHandler = { httpAgent: agent, httpsAgent: agent };
  if (env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY) {
    config.credentials = {
      accessKeyId: env.AWS_ACCESS_KEY_ID,
      secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
      ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}),
    };
  }
  return new S3Client(config);
}

export function openS3BlobStore(url: string, bucket: string, prefix: string, env: NodeJS.ProcessEnv): S3BlobStore {
  const endpoint = s3EndpointFrom(env);
  return new S3BlobStore(url, bucket, prefix, createS3Client(env), endpoint ?? 'AWS S3 (no AWS_ENDPOINT_URL_S3 set)');
}
