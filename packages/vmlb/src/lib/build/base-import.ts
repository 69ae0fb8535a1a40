import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, lstatSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import * as path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { createGunzip } from 'node:zlib';
import { execa } from 'execa';
import { type Dispatcher, fetch } from 'undici';
import { chainDigestAndSha256, ROOT_DIGEST, writeDigest } from '../cache-identity/digest';
import { digestPathFor, partialPathFor } from '../image/dist-layout';
import type { Log } from '../util/log';
import { type ProgressSink, progressSink } from '../util/progress-line';
import { type Qcow2Compat, createBlank, convertToQcow2 } from '../disk/qcow2';
import { imageInfo } from '../disk/qcow2-info';
import { formatBytes, formatDuration, parseSize } from '../util/units';
import { detectBaseFormat } from '../disk/disk-format';
import { proxyDispatcher } from '../util/proxy-env';

export type BaseSource = { url: string; sha256: string } | { path: string } | { empty: string };

/** The folder that keeps verified downloads by sha256: VMLB_DOWNLOAD_CACHE, else $XDG_CACHE_HOME/vmlb/downloads. */
export function defaultDownloadCache(env: NodeJS.ProcessEnv = process.env): string {
  if (env.VMLB_DOWNLOAD_CACHE) return env.VMLB_DOWNLOAD_CACHE;
  return path.join(env.XDG_CACHE_HOME || path.join(homedir(), '.cache'), 'vmlb', 'downloads');
}

/**
 * Imports a base disk into `output` (qcow2) and writes its digest beside
 * it. The result is written under a temporary name and renamed, so a failed
 * or interrupted import leaves nothing that looks like a base, and an
 * earlier base as it was.
 */
export async function importBase(
  source: BaseSource,
  output: string,
  options: {
    downloadCache: string;
    log: Log;
    workspaceRoot: string;
    /** The image.json the base comes from, as messages name it (default `image.json`). */
    configFile?: string;
    /** Files that describe the earlier base (its manifest): removed only when the new base replaces it. */
    replaces?: string[];
    /** Where the proxy variables come from (default process.env). */
    env?: NodeJS.ProcessEnv;
    /** qcow2 compatibility level of the base (image.json's qcow2Compat). Default: qemu-img's. */
    qcow2Compat?: Qcow2Compat;
  },
): Promise<{ digest: string; sha256: string }> {
  const configFile = options.configFile ?? 'image.json';
  mkdirSync(path.dirname(output), { recursive: true });
  const partial = partialPathFor(output);
  rmSync(partial, { force: true });
  try {
    if ('empty' in source) {
      const bytes = parseSize(source.empty);
      if (bytes === undefined) throw new Error(`base.empty '${source.empty}' is not a disk size; use e.g. 4G.`);
      await createBlank(partial, bytes, { compat: options.qcow2Compat });
      options.log(`vmlb: blank ${formatBytes(bytes)} base disk`);
    } else if ('path' in source) {
      const file = path.resolve(options.workspaceRoot, source.path);
      if (!existsSync(file)) {
        throw new Error(`base.path ${source.path} does not exist (resolved to ${file}). Fix base.path in ${configFile}, or put the disk there.`);
      }
      await convertDisk(file, partial, options.log, source.path, `base.path in ${configFile}`, options.qcow2Compat);
    } else {
      const download = await fetchVerified(source.url, source.sha256, options.downloadCache, options.log, configFile, options.env);
      await convertDisk(download, partial, options.log, path.basename(new URL(source.url).pathname), `base.url in ${configFile}`, options.qcow2Compat);
    }
    const { digest, sha256 } = await chainDigestAndSha256(ROOT_DIGEST, partial);
    // The digest goes first and comes back last: a digest present always matches the base beside it.
    for (const file of [digestPathFor(output), ...(options.replaces ?? [])]) rmSync(file, { force: true });
    renameSync(partial, output);
    await writeDigest(digestPathFor(output), digest);
    return { digest, sha256 };
  } catch (error) {
    rmSync(partial, { force: true });
    throw error;
  }
}

const COMPRESSED: Record<string, string[] | 'gzip'> = { '.xz': ['xz', '-dc'], '.gz': 'gzip', '.zst': ['zstd', '-dc'] };

/** Decompresses (by file name) and converts any disk qemu-img reads into a standalone qcow2. `setting` names where the file was asked for. */
async function convertDisk(file: string, output: string, log: Log, displayName: string, setting: string, compat?: Qcow2Compat): Promise<void> {
  const extension = path.extname(file);
  let disk = file;
  let temporary: string | undefined;
  const decompressor = COMPRESSED[extension];
  if (decompressor) {
    temporary = `${output}.decompressed`;
    log(`vmlb: decompressing ${displayName}`);
    if (decompressor === 'gzip') {
      await pipeline(createReadStream(file), createGunzip(), createWriteStream(temporary));
    } else {
      await execa(decompressor[0], [...decompressor.slice(1), file], { stdout: { file: temporary } });
    }
    disk = temporary;
  }
  try {
    // The format comes from the file's header (never qemu's probe), and a disk naming other files is refused.
    const { format } = await detectBaseFormat(disk, displayName, setting);
    const info = await imageInfo(disk, { format });
    // qemu-img rounds a raw file up to whole sectors; a real raw disk is sector-sized already.
    const bytes = statSync(disk).size;
    if (info.format === 'raw' && (bytes === 0 || bytes % 512 !== 0)) {
      throw new Error(
        `${displayName} is not a disk image: qemu-img sees no image format in it, and as a raw disk its ${bytes} bytes are not a whole number of 512-byte sectors. ` +
          `Point ${setting} at a disk image (qcow2, raw, vmdk, vdi, vhdx or vpc; .xz, .gz or .zst compressed or not).`,
      );
    }
    log(`vmlb: importing ${info.format} disk of ${formatBytes(info.virtualSize)}`);
    await convertToQcow2(disk, output, { sourceFormat: format, progress: true, compat });
  } finally {
    if (temporary) rmSync(temporary, { force: true });
  }
}

/**
 * Returns a local copy of `url` whose sha256 is `sha256`, downloading it
 * only when the cache does not hold it yet. Images that share a base (same
 * sha256) share the download. A mismatch keeps nothing.
 */
export async function fetchVerified(
  url: string,
  sha256: string,
  cacheDir: string,
  log: Log,
  configFile = 'image.json',
  env: NodeJS.ProcessEnv = process.env,
): Promise<string> {
  const name = path.basename(new URL(url).pathname) || 'download';
  const cached = path.join(cacheDir, `${sha256}-${name}`);
  if (existsSync(cached)) {
    // A name is no proof: the cache is a plain folder, and a copy there may have been damaged or replaced.
    const actual = await cachedSha256(cached);
    if (actual === sha256.toLowerCase()) {
      log(`vmlb: using ${name} from the download cache (${cacheDir}), sha256 verified`);
      return cached;
    }
    rmSync(cached, { force: true, recursive: true });
    log(
      `vmlb: ${name} in the download cache (${cached}) does not have the sha256 ${sha256.toLowerCase()} it is filed under ` +
        `(it has ${actual}): discarded it, downloading again`,
    );
  }
  mkdirSync(cacheDir, { recursive: true });
  const partial = `${cached}.${process.pid}.partial`;
  const hash = createHash('sha256');
  const dispatcher = proxyDispatcher(env);
  try {
    const { body, size } = await openUrl(url, configFile, dispatcher);
    const progress = new ProgressReporter(name, size, log);
    let received = 0;
    try {
      await pipeline(
        body,
        new Transform({
          transform(chunk: Buffer, _encoding, callback) {
            hash.update(chunk);
            received += chunk.length;
            progress.add(chunk.length);
            callback(null, chunk);
          },
        }),
        createWriteStream(partial),
      );
    } catch (error) {
      // fetch reports a connection dropped mid-body only as "terminated".
      const cause = ((error as Error & { cause?: Error }).cause ?? error) as Error;
      throw new Error(
        `Cannot download ${url}: the transfer stopped after ${received} of ${size ?? 'an unknown number of'} bytes (${cause.message}). ` +
          `Nothing was kept; build again to retry.`,
      );
    }
    progress.done();
    const actual = hash.digest('hex');
    if (actual !== sha256.toLowerCase()) {
      throw new Error(
        `sha256 mismatch for ${url}:\n  expected ${sha256.toLowerCase()} (base.sha256 in ${configFile})\n  actual   ${actual}\n` +
          `Nothing was kept. Check base.url, or update base.sha256 if the file was meant to change.`,
      );
    }
    renameSync(partial, cached);
    return cached;
  } catch (error) {
    rmSync(partial, { force: true });
    throw error;
  } finally {
    // Its kept-alive connections would otherwise hold the process open.
    await dispatcher?.destroy();
  }
}

/** The sha256 of a cached download, or what it is instead of a regular file (never read: a FIFO would block). */
async function cachedSha256(file: string): Promise<string> {
  const stats = lstatSync(file);
  if (!stats.isFile()) return `no sha256: it is not a regular file`;
  const hash = createHash('sha256');
  await pipeline(createReadStream(file), hash);
  return hash.digest('hex');
}

async function openUrl(url: string, configFile: string, dispatcher: Dispatcher | undefined): Promise<{ body: Readable; size?: number }> {
  const parsed = new URL(url);
  if (parsed.protocol === 'file:') {
    const file = fileURLToPath(parsed);
    if (!existsSync(file)) throw new Error(`Cannot download ${url}: ${file} does not exist. Check base.url in ${configFile}.`);
    return { body: createReadStream(file), size: statSync(file).size };
  }
  let response: Awaited<ReturnType<typeof fetch>>;
  try {
    // undici's own fetch, with a dispatcher of the same undici (Node 20's global fetch ignores the proxy variables).
    response = await fetch(url, { redirect: 'follow', ...(dispatcher ? { dispatcher } : {}) });
  } catch (error) {
    const cause = (error as { cause?: Error }).cause;
    throw new Error(
      `Cannot download ${url}: ${cause?.message ?? (error as Error).message}. Check base.url in ${configFile}, and that this host reaches the server (proxy: https_proxy).`,
    );
  }
  if (!response.ok || !response.body) {
    throw new Error(`Cannot download ${url}: the server answered ${response.status} ${response.statusText}. Check base.url in ${configFile}.`);
  }
  const length = Number(response.headers.get('content-length'));
  return {
    body: Readable.fromWeb(response.body as import('node:stream/web').ReadableStream),
    size: Number.isFinite(length) && length > 0 ? length : undefined,
  };
}

/** Bytes, rate and ETA of a download, through a progress sink (one updating line on a terminal). */
class ProgressReporter {
  private received = 0;
  private readonly started = Date.now();
  private readonly sink: ProgressSink;

  constructor(
    private readonly name: string,
    private readonly size: number | undefined,
    log: Log,
  ) {
    this.sink = progressSink(log);
  }

  add(bytes: number): void {
    this.received += bytes;
    this.sink.update(this.line());
  }

  done(): void {
    this.sink.finish(this.line());
  }

  private line(): string {
    const seconds = Math.max((Date.now() - this.started) / 1000, 0.001);
    const rate = this.received / seconds;
    const total = this.size ? ` of ${formatBytes(this.size)} (${Math.floor((this.received / this.size) * 100)} %)` : '';
    const eta = this.size && rate > 0 && this.received < this.size ? `, ${formatDuration(((this.size - this.received) / rate) * 1000)} left` : '';
    return `vmlb: ${this.name}: ${formatBytes(this.received)}${total} at ${formatBytes(rate)}/s${eta}`;
  }
}
