import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import { writeFileAtomic } from '../util/atomic-file';

/** The digest a base's chain digest starts from (a base has no parent). */
export const ROOT_DIGEST = '0'.repeat(64);

/**
 * sha256 identities of disk images and of chains of overlays. Images are
 * gigabytes, so files are always streamed in bounded chunks, never loaded.
 */

/** Chunk size for reading images: large enough for throughput, small enough to keep memory flat. */
const READ_CHUNK_BYTES = 1024 * 1024;

/** A sha256 as vmlb writes them (digests, blob names): 64 lower-case hex digits. */
const SHA256_HEX = /^[0-9a-f]{64}$/;
/** The same in either case, as a user may paste one into image.json. */
const SHA256_HEX_ANY_CASE = new RegExp(SHA256_HEX.source, 'i');

/** The sha256 of a file's bytes, as 64 lower-case hex digits. */
export async function sha256File(filePath: string): Promise<string> {
  const hash = createHash('sha256');
  await hashFileInto(hash, filePath);
  return hash.digest('hex');
}

/**
 * The identity of an overlay in its chain: sha256 over the parent's digest
 * (64 hex digits as ASCII), a newline, then the overlay file's bytes. Two
 * layers match only if their own bytes and everything below them match.
 */
export async function chainDigest(parentDigest: string, filePath: string): Promise<string> {
  assertDigest(parentDigest, `Parent digest for ${filePath}`);
  const hash = createHash('sha256');
  hash.update(`${parentDigest}\n`, 'ascii');
  await hashFileInto(hash, filePath);
  return hash.digest('hex');
}

/**
 * The chain digest (see chainDigest) and the plain sha256 of the file's
 * bytes (its name in a blob store), from one read of the file.
 */
export async function chainDigestAndSha256(parentDigest: string, filePath: string): Promise<{ digest: string; sha256: string }> {
  assertDigest(parentDigest, `Parent digest for ${filePath}`);
  const chain = createHash('sha256');
  const content = createHash('sha256');
  chain.update(`${parentDigest}\n`, 'ascii');
  const stream = createReadStream(filePath, { highWaterMark: READ_CHUNK_BYTES });
  for await (const chunk of stream) {
    chain.update(chunk as Buffer);
    content.update(chunk as Buffer);
  }
  return { digest: chain.digest('hex'), sha256: content.digest('hex') };
}

/**
 * Reads a digest file (64 lower-case hex digits and a newline). Throws when
 * the content is anything else, naming the file; a missing file throws
 * Node's ENOENT error (check `code`) so callers can treat it as "not built".
 */
export async function readDigest(digestPath: string): Promise<string> {
  const content = await fs.readFile(digestPath, 'latin1');
  const digest = content.endsWith('\n') ? content.slice(0, -1) : undefined;
  if (digest === undefined || !isSha256(digest)) {
    const shown = content.length > 80 ? `${JSON.stringify(content.slice(0, 80))}... (${content.length} bytes)` : JSON.stringify(content);
    throw new Error(`Digest file ${digestPath} is malformed: expected 64 lower-case hex digits and a newline, found ${shown}. Delete it to rebuild.`);
  }
  return digest;
}

/** Writes a digest file (64 hex digits and a newline) atomically. */
export async function writeDigest(digestPath: string, digest: string): Promise<void> {
  assertDigest(digest, `Digest for ${digestPath}`);
  await writeFileAtomic(digestPath, `${digest}\n`);
}

/** Whether `text` is a digest as this module writes them: 64 lower-case hex digits. */
export function isDigest(text: string): boolean {
  return isSha256(text);
}

/** Whether `value` is a sha256 as 64 hex digits: lower-case ones, or of either case with `anyCase`. */
export function isSha256(text: string, options: { anyCase?: boolean } = {}): boolean {
  return (options.anyCase ? SHA256_HEX_ANY_CASE : SHA256_HEX).test(text);
}

async function hashFileInto(hash: Hash, filePath: string): Promise<void> {
  const stream = createReadStream(filePath, { highWaterMark: READ_CHUNK_BYTES });
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
  }
}

function assertDigest(digest: string, what: string): void {
  if (!isSha256(digest)) {
    throw new Error(`${what} must be 64 lower-case hex digits (a sha256), got ${JSON.stringify(digest)}`);
  }
}
