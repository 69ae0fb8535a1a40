import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openFileBlobStore } from './file-store';
import type { RemoteBlobStore } from './store-api';

/**
 * The shared blob store: layer files named by the sha256 of their bytes, on
 * a shared filesystem (file:///path) or in an S3-compatible bucket
 * (s3://bucket/prefix). Layers are gigabytes, so every transfer streams and
 * hashes on the way; no layer is ever held in memory.
 */

export { BlobIntegrityError, BlobNotFoundError, BlobStoreError } from './errors';

export type { RemoteBlobStore, TransferOptions } from './store-api';

const ACCEPTED_FORMS =
  'file:///absolute/path (a directory every machine mounts, e.g. NFS) or s3://bucket[/prefix] ' +
  '(an S3-compatible bucket; endpoint, region and credentials from AWS_ENDPOINT_URL_S3, AWS_REGION, AWS_ACCESS_KEY_ID... or the AWS default chain)';

/** S3 bucket names as AWS and the common S3-compatible servers accept them (legacy upper case and underscores included). */
const BUCKET_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$/;

/**
 * Opens the store a URL names. Nothing is contacted for s3:// (credentials
 * and the bucket are checked by the first request); a file:// directory
 * must exist. Throws, naming the value and the accepted forms, for any
 * other URL.
 */
export async function openRemoteBlobStore(url: string, env: NodeJS.ProcessEnv = process.env): Promise<RemoteBlobStore> {
  if (url.startsWith('file:')) {
    return openFileBlobStore(url, fileStoreRoot(url));
  }
  if (url.startsWith('s3:')) {
    const { bucket, prefix } = s3Location(url);
    // vmlb pins the SDK (~3.1173) to versions that run on Node 20; their
    // notice that later versions will need Node 22 would otherwise be printed
    // by every layer task.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    // The AWS SDK is large: load it only when an s3:// store is used.
    const { openS3BlobStore } = await import('./s3-store');
    return openS3BlobStore(url, bucket, prefix, env);
  }
  throw invalidUrl(url, 'it is neither a file:// nor an s3:// URL');
}

function invalidUrl(url: string, reason: string): Error {
  return new Error(`Blob store URL ${JSON.stringify(url)} is not usable: ${reason}. Use ${ACCEPTED_FORMS}.`);
}

/** The absolute directory of a file:///path URL; file://host/path and relative forms are refused. */
function fileStoreRoot(url: string): string {
  if (!url.startsWith('file:///')) {
    throw invalidUrl(
      url,
      'a file store URL needs an absolute path after "file://", as in file:///srv/blobs (three slashes; "file://name" reads "name" as a host)',
    );
  }
  let parsed: URL;
  let directory: string;
  try {
    parsed = new URL(url);
    directory = fileURLToPath(parsed);
  } catch (error) {
    throw invalidUrl(url, `it is not a well-formed file URL (${(error as Error).message})`);
  }
  if (parsed.search || parsed.hash) {
    throw invalidUrl(url, 'file store URLs take no ?query or #fragment');
  }
  const root = path.resolve(directory);
  if (root === path.parse(root).root) {
    throw invalidUrl(url, 'the store cannot be the root directory itself');
  }
  return root;
}

/** Bucket and key prefix (no leading or trailing slash, possibly empty) of an s3://bucket/prefix URL. */
function s3Location(url: string): { bucket: string; prefix: string } {
  const match = /^s3:\/\/([^/]*)(?:\/(.*))?$/.exec(url);
  if (!match) {
    throw invalidUrl(url, 'an S3 store URL starts with "s3://" followed by the bucket, as in s3://my-bucket/vmlb');
  }
  const [, bucket, rawPrefix = ''] = match;
  if (!bucket) {
    throw invalidUrl(url, 'it names no bucket; write s3://<bucket> or s3://<bucket>/<prefix>');
  }
  if (!BUCKET_PATTERN.test(bucket)) {
    throw invalidUrl(url, `${JSON.stringify(bucket)} is not a valid bucket name (letters, digits, ".", "-" and "_", 2 to 255 characters)`);
  }
  if (/[?#]/.test(rawPrefix)) {
    throw invalidUrl(url, 'S3 store URLs take no ?query or #fragment (configure endpoint and region through AWS_ENDPOINT_URL_S3 and AWS_REGION)');
  }
  const prefix = rawPrefix.replace(/^\/+|\/+$/g, '');
  if (prefix !== '' && prefix.split('/').some((segment) => segment === '' || segment === '.' || segment === '..')) {
    throw invalidUrl(url, `the key prefix ${JSON.stringify(prefix)} has an empty, "." or ".." segment`);
  }
  return { bucket, prefix };
}
