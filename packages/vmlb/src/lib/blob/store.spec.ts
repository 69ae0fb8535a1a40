import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { deadPort, startTestProxy, type TestProxy } from '../../../test/support/connect-proxy';
import { type S3TestServer, startS3TestServer } from '../../testing/s3-server';
import { BlobIntegrityError, BlobNotFoundError, openRemoteBlobStore, type RemoteBlobStore } from './store';
import type { S3BlobStore } from './s3-store';

const MiB = 1024 * 1024;

/** A scratch directory per test file, removed at the end. */
let scratch: string;
beforeAll(async () => {
  scratch = await fs.mkdtemp(path.join(tmpdir(), 'vmlb-blob-store-'));
});
afterAll(async () => {
  await fs.rm(scratch, { recursive: true, force: true });
});

let fileCount = 0;
/** A new path under the scratch directory. */
const scratchPath = (name: string) => path.join(scratch, `${++fileCount}-${name}`);

/** Writes `bytes` random bytes to a new file, streaming, and returns its path and sha256. */
async function randomFile(bytes: number, name = 'layer.qcow2'): Promise<{ file: string; sha256: string; bytes: number }> {
  const file = scratchPath(name);
  const hash = createHash('sha256');
  const block = randomBytes(Math.min(bytes, MiB));
  let written = 0;
  const source = Readable.from(
    (function* () {
      while (written < bytes) {
        // Vary every block so no two parts of a multipart upload are equal.
        const chunk = Buffer.from(block.subarray(0, Math.min(block.length, bytes - written)));
        chunk.writeUInt32LE(written / MiB, 0);
        written += chunk.length;
        hash.update(chunk);
        yield chunk;
      }
    })(),
  );
  await pipeline(source, createWriteStream(file));
  return { file, sha256: hash.digest('hex'), bytes };
}

async function sha256Of(file: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(file), hash);
  return hash.digest('hex');
}

const exists = (file: string) =>
  fs.stat(file).then(
    () => true,
    () => false,
  );

const UNKNOWN_SHA256 = 'f'.repeat(64);

/** Samples this process's RSS while `work` runs; returns the peak. */
async function peakRssDuring<T>(work: () => Promise<T>): Promise<{ result: T; peakRss: number; baselineRss: number }> {
  const baselineRss = process.memoryUsage.rss();
  let peakRss = baselineRss;
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage.rss());
  }, 20);
  try {
    const result = await work();
    peakRss = Math.max(peakRss, process.memoryUsage.rss());
    return { result, peakRss, baselineRss };
  } finally {
    clearInterval(sampler);
  }
}

describe('openRemoteBlobStore', () => {
  it.each([
    ['http://x', /"http:\/\/x".*neither a file:\/\/ nor an s3:\/\/ URL.*file:\/\/\/absolute\/path.*s3:\/\/bucket/],
    ['file://relative', /"file:\/\/relative".*absolute path.*file:\/\/\/srv\/blobs/],
    ['file:relative', /"file:relative".*absolute path/],
    ['s3://', /"s3:\/\/".*names no bucket.*s3:\/\/<bucket>/],
    ['s3:///prefix', /"s3:\/\/\/prefix".*names no bucket/],
    ['s3:bucket', /"s3:bucket".*s3:\/\/my-bucket/],
    ['s3://bucket/a//b', /empty, "\." or "\.\." segment/],
    ['s3://bucket/p?region=eu-west-1', /no \?query/],
    ['', /"".*neither a file:\/\/ nor an s3:\/\/ URL/],
  ])('refuses %j, naming it and the accepted forms', async (url, message) => {
    await expect(openRemoteBlobStore(url, {})).rejects.toThrow(message);
  });

  it('refuses a file:// directory that does not exist (an unmounted share must not become a local folder)', async () => {
    const missing = path.join(scratch, 'not-mounted');
    await expect(openRemoteBlobStore(`file://${missing}`, {})).rejects.toThrow(`cannot use ${missing}; create the directory (or mount the share) first`);
  });

  it('keeps the URL as configured and reads the S3 key prefix without its slashes', async () => {
    const store = (await openRemoteBlobStore('s3://bucket/team/vmlb/', {})) as S3BlobStore;
    expect(store.url).toBe('s3://bucket/team/vmlb/');
    expect(store.keyOf(UNKNOWN_SHA256)).toBe(`team/vmlb/sha256/${UNKNOWN_SHA256}`);
    const bare = (await openRemoteBlobStore('s3://bucket', {})) as S3BlobStore;
    expect(bare.keyOf(UNKNOWN_SHA256)).toBe(`sha256/${UNKNOWN_SHA256}`);
  });
});

describe('file:// blob store', () => {
  let root: string;
  let store: RemoteBlobStore;
  const blobPath = (sha256: string) => path.join(root, 'sha256', sha256);

  beforeAll(async () => {
    root = scratchPath('store');
    await fs.mkdir(root);
    store = await openRemoteBlobStore(`file://${root}`, {});
  });

  it('uploads, then downloads the same bytes; the published blob is read-only; a second upload is "exists"', async () => {
    const layer = await randomFile(3 * MiB + 17);
    expect(await store.has(layer.sha256)).toBe(false);
    expect(await store.upload(layer.sha256, layer.file)).toBe('uploaded');
    expect(await store.has(layer.sha256)).toBe(true);
    expect((await fs.stat(blobPath(layer.sha256))).mode & 0o777).toBe(0o444);
    expect(await fs.readdir(path.join(root, '.tmp'))).toEqual([]);

    const destination = scratchPath('downloaded.qcow2');
    expect(await store.download(layer.sha256, destination)).toEqual({ bytes: layer.bytes });
    expect(await sha256Of(destination)).toBe(layer.sha256);

    expect(await store.upload(layer.sha256, layer.file)).toBe('exists');
  });

  it('reports progress up to the total, for uploads and downloads', async () => {
    const layer = await randomFile(8 * MiB);
    const uploadProgress: Array<[number, number]> = [];
    await store.upload(layer.sha256, layer.file, { onProgress: (done, total) => uploadProgress.push([done, total]) });
    expect(uploadProgress.at(-1)).toEqual([layer.bytes, layer.bytes]);

    const downloadProgress: Array<[number, number]> = [];
    await store.download(layer.sha256, scratchPath('progress.qcow2'), { onProgress: (done, total) => downloadProgress.push([done, total]) });
    expect(downloadProgress.at(-1)).toEqual([layer.bytes, layer.bytes]);
    expect(downloadProgress.every(([done, total], index) => total === layer.bytes && done >= (downloadProgress[index - 1]?.[0] ?? 0))).toBe(true);
  });

  it('throws BlobNotFoundError for an unknown blob and leaves no destination', async () => {
    const destination = scratchPath('unknown.qcow2');
    const failure = store.download(UNKNOWN_SHA256, destination);
    await expect(failure).rejects.toBeInstanceOf(BlobNotFoundError);
    await expect(failure).rejects.toThrow(`Blob ${UNKNOWN_SHA256} is not in file://${root}`);
    expect(await exists(destination)).toBe(false);
  });

  it('refuses to upload a file under a sha256 its bytes do not have, and publishes nothing', async () => {
    const layer = await randomFile(MiB);
    const failure = store.upload(UNKNOWN_SHA256, layer.file);
    await expect(failure).rejects.toBeInstanceOf(BlobIntegrityError);
    await expect(failure).rejects.toThrow(`${layer.file} is not blob ${UNKNOWN_SHA256}: its ${MiB} bytes have sha256 ${layer.sha256}`);
    expect(await store.has(UNKNOWN_SHA256)).toBe(false);
    expect(await fs.readdir(path.join(root, '.tmp'))).toEqual([]);
  });

  it('throws BlobIntegrityError for a corrupted blob, naming the store and both sha256, and removes the destination', async () => {
    const layer = await randomFile(2 * MiB);
    await store.upload(layer.sha256, layer.file);
    const bytes = await fs.readFile(blobPath(layer.sha256));
    bytes[bytes.length >> 1] ^= 0xff;
    const actual = createHash('sha256').update(bytes).digest('hex');
    await fs.rm(blobPath(layer.sha256));
    await fs.writeFile(blobPath(layer.sha256), bytes);

    const destination = scratchPath('corrupt.qcow2');
    const failure = store.download(layer.sha256, destination);
    await expect(failure).rejects.toBeInstanceOf(BlobIntegrityError);
    await expect(failure).rejects.toThrow(
      `Blob ${layer.sha256} in file://${root} is corrupt: its ${2 * MiB} bytes have sha256 ${actual}, expected ${layer.sha256}`,
    );
    expect(await exists(destination)).toBe(false);
  });

  it('refuses to download over an existing file and leaves that file alone', async () => {
    const layer = await randomFile(MiB);
    await store.upload(layer.sha256, layer.file);
    const destination = scratchPath('taken.qcow2');
    await fs.writeFile(destination, 'precious');
    await expect(store.download(layer.sha256, destination)).rejects.toThrow(`${destination}: that file already exists`);
    expect(await fs.readFile(destination, 'utf8')).toBe('precious');
  });

  it.each([
    ['upper case', UNKNOWN_SHA256.toUpperCase()],
    ['too short', 'abc123'],
    ['not hex', 'g'.repeat(64)],
  ])('refuses a sha256 argument that is %s, naming it', async (_what, sha256) => {
    const expected = `Invalid blob sha256 "${sha256}": expected 64 lower-case hex digits`;
    await expect(store.has(sha256)).rejects.toThrow(expected);
    await expect(store.upload(sha256, __filename)).rejects.toThrow(expected);
    await expect(store.download(sha256, scratchPath('never'))).rejects.toThrow(expected);
  });

  it('stops a download on abort and removes the partial file', async () => {
    const layer = await randomFile(64 * MiB);
    await store.upload(layer.sha256, layer.file);
    const destination = scratchPath('aborted.qcow2');
    const controller = new AbortController();
    let partial = 0;
    const failure = store.download(layer.sha256, destination, {
      signal: controller.signal,
      onProgress: (done) => {
        partial = done;
        // Abort mid-way, once bytes have reached the destination.
        if (done > 0 && done < layer.bytes) controller.abort();
      },
    });
    await expect(failure).rejects.toMatchObject({ name: 'AbortError' });
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThan(layer.bytes);
    expect(await exists(destination)).toBe(false);
  });

  it('stops an upload on abort and publishes nothing', async () => {
    const layer = await randomFile(16 * MiB);
    const controller = new AbortController();
    controller.abort();
    await expect(store.upload(layer.sha256, layer.file, { signal: controller.signal })).rejects.toMatchObject({ name: 'AbortError' });
    const midway = new AbortController();
    const failure = store.upload(layer.sha256, layer.file, { signal: midway.signal, onProgress: () => midway.abort() });
    await expect(failure).rejects.toMatchObject({ name: 'AbortError' });
    expect(await store.has(layer.sha256)).toBe(false);
    expect(await fs.readdir(path.join(root, '.tmp'))).toEqual([]);
  });

  it('treats a concurrent upload of the same blob as "exists", never as a failure', async () => {
    const layer = await randomFile(4 * MiB);
    const outcomes = await Promise.all([store.upload(layer.sha256, layer.file), store.upload(layer.sha256, layer.file)]);
    expect(outcomes.sort()).toEqual(['exists', 'uploaded']);
    expect(await sha256Of(blobPath(layer.sha256))).toBe(layer.sha256);
  });
});

/** Counts the S3 requests a store's client sends, by command name (observes the real client; changes nothing). */
function countCommands(store: S3BlobStore): Map<string, number> {
  const counts = new Map<string, number>();
  store.client.middlewareStack.add(
    (next, context) => (args) => {
      counts.set(context.commandName ?? '?', (counts.get(context.commandName ?? '?') ?? 0) + 1);
      return next(args);
    },
    { step: 'initialize', name: `countCommands${Math.random()}` },
  );
  return counts;
}

describe('s3:// blob store (s3rver on 127.0.0.1)', () => {
  let server: S3TestServer;
  let store: S3BlobStore;
  const prefix = 'team/vmlb';

  beforeAll(async () => {
    server = await startS3TestServer();
    store = (await openRemoteBlobStore(`s3://${server.bucket}/${prefix}`, server.env)) as S3BlobStore;
  });
  afterAll(async () => {
    store?.client.destroy();
    await server?.close();
  });

  it('uploads (with the sha256 as metadata), then downloads the same bytes; a second upload is "exists"', async () => {
    const layer = await randomFile(3 * MiB + 5);
    expect(await store.has(layer.sha256)).toBe(false);
    expect(await store.upload(layer.sha256, layer.file)).toBe('uploaded');
    expect(await store.has(layer.sha256)).toBe(true);
    const object = await server.client.send(new GetObjectCommand({ Bucket: server.bucket, Key: `${prefix}/sha256/${layer.sha256}` }));
    (object.Body as Readable).destroy();
    expect(object.Metadata).toEqual({ sha256: layer.sha256 });

    const destination = scratchPath('from-s3.qcow2');
    expect(await store.download(layer.sha256, destination)).toEqual({ bytes: layer.bytes });
    expect(await sha256Of(destination)).toBe(layer.sha256);

    expect(await store.upload(layer.sha256, layer.file)).toBe('exists');
  });

  it('throws BlobNotFoundError for an unknown blob and leaves no destination', async () => {
    const destination = scratchPath('unknown-s3.qcow2');
    const failure = store.download(UNKNOWN_SHA256, destination);
    await expect(failure).rejects.toBeInstanceOf(BlobNotFoundError);
    await expect(failure).rejects.toThrow(`Blob ${UNKNOWN_SHA256} is not in s3://${server.bucket}/${prefix}`);
    expect(await exists(destination)).toBe(false);
  });

  it('throws BlobIntegrityError for an object overwritten with other bytes and removes the destination', async () => {
    const layer = await randomFile(MiB);
    await store.upload(layer.sha256, layer.file);
    const otherBytes = randomBytes(MiB);
    await server.client.send(new PutObjectCommand({ Bucket: server.bucket, Key: `${prefix}/sha256/${layer.sha256}`, Body: otherBytes }));

    const destination = scratchPath('corrupt-s3.qcow2');
    const failure = store.download(layer.sha256, destination);
    await expect(failure).rejects.toBeInstanceOf(BlobIntegrityError);
    await expect(failure).rejects.toThrow(
      `Blob ${layer.sha256} in s3://${server.bucket}/${prefix} is corrupt: its ${MiB} bytes have sha256 ${createHash('sha256').update(otherBytes).digest('hex')}`,
    );
    expect(await exists(destination)).toBe(false);
  });

  it('replaces what an upload cut off half-way left under a blob name, instead of taking it for the blob', async () => {
    const layer = await randomFile(2 * MiB);
    const key = `${prefix}/sha256/${layer.sha256}`;
    // What s3rver (and some S3-compatible servers) keep of a PutObject whose client died mid-body: the bytes that arrived.
    const firstHalf = (await fs.readFile(layer.file)).subarray(0, MiB);
    await server.client.send(new PutObjectCommand({ Bucket: server.bucket, Key: key, Body: firstHalf, Metadata: { sha256: layer.sha256 } }));
    expect(await store.has(layer.sha256)).toBe(true);

    expect(await store.upload(layer.sha256, layer.file)).toEqual({ replaced: MiB });
    const destination = scratchPath('replaced.qcow2');
    expect(await store.download(layer.sha256, destination)).toEqual({ bytes: layer.bytes });
    expect(await sha256Of(destination)).toBe(layer.sha256);
    expect(await store.upload(layer.sha256, layer.file)).toBe('exists');
  });

  it.each([
    ['in one PutObject', MiB],
    ['in a multipart upload', 20 * MiB],
  ])('refuses to upload a file under a sha256 its bytes do not have, %s, and publishes nothing', async (_how, bytes) => {
    const layer = await randomFile(bytes);
    const failure = store.upload(UNKNOWN_SHA256, layer.file);
    await expect(failure).rejects.toBeInstanceOf(BlobIntegrityError);
    await expect(failure).rejects.toThrow(`${layer.file} is not blob ${UNKNOWN_SHA256}: its ${bytes} bytes have sha256 ${layer.sha256}`);
    expect(await store.has(UNKNOWN_SHA256)).toBe(false);
  });

  it('uploads a 110 MiB layer in parts, with bounded memory, and downloads it intact', async () => {
    const layer = await randomFile(110 * MiB, 'big.qcow2');
    const commands = countCommands(store);
    const progress: number[] = [];

    const upload = await peakRssDuring(() => store.upload(layer.sha256, layer.file, { onProgress: (done) => progress.push(done) }));
    expect(upload.result).toBe('uploaded');
    // 110 MiB in 16 MiB parts: 7 parts, and never a single PutObject.
    expect(commands.get('UploadPartCommand')).toBe(7);
    expect(commands.get('CompleteMultipartUploadCommand')).toBe(1);
    expect(commands.get('PutObjectCommand')).toBeUndefined();
    expect(progress.at(-1)).toBe(layer.bytes);

    const destination = scratchPath('big-from-s3.qcow2');
    const download = await peakRssDuring(() => store.download(layer.sha256, destination));
    expect(download.result).toEqual({ bytes: layer.bytes });
    expect(await sha256Of(destination)).toBe(layer.sha256);

    // Reported, not asserted: RSS includes Jest, ts-jest and s3rver, which runs in this process.
    const inMiB = (bytes: number) => `${Math.round(bytes / MiB)} MiB`;
    process.stdout.write(
      `blob-store.spec: 110 MiB via s3rver: upload peak RSS ${inMiB(upload.peakRss)} (from ${inMiB(upload.baselineRss)}), ` +
        `download peak RSS ${inMiB(download.peakRss)} (from ${inMiB(download.baselineRss)})\n`,
    );
  });

  it('stops an upload on abort and publishes nothing', async () => {
    const layer = await randomFile(48 * MiB);
    const controller = new AbortController();
    // Progress comes as parts are stored: abort once the first of three is.
    const failure = store.upload(layer.sha256, layer.file, {
      signal: controller.signal,
      onProgress: (done, total) => done < total && controller.abort(),
    });
    await expect(failure).rejects.toMatchObject({ name: 'AbortError' });
    expect(await store.has(layer.sha256)).toBe(false);
  });

  it('stops a download on abort and removes the partial file', async () => {
    const layer = await randomFile(32 * MiB);
    await store.upload(layer.sha256, layer.file);
    const destination = scratchPath('aborted-s3.qcow2');
    const controller = new AbortController();
    const failure = store.download(layer.sha256, destination, {
      signal: controller.signal,
      onProgress: (done, total) => done > 0 && done < total && controller.abort(),
    });
    await expect(failure).rejects.toMatchObject({ name: 'AbortError' });
    expect(await exists(destination)).toBe(false);
  });

  it('names the store, the operation and the SDK message when the bucket does not exist', async () => {
    const missing = (await openRemoteBlobStore('s3://no-such-bucket/x', server.env)) as S3BlobStore;
    try {
      const layer = await randomFile(1024);
      await expect(missing.upload(layer.sha256, layer.file)).rejects.toThrow(
        /^s3:\/\/no-such-bucket\/x: upload .* of s3:\/\/no-such-bucket\/x\/sha256\/[0-9a-f]{64} failed \(HTTP 404 NoSuchBucket\): The specified bucket does not exist\. Create bucket no-such-bucket at http:\/\/127\.0\.0\.1:\d+/,
      );
    } finally {
      missing.client.destroy();
    }
  });

  it('names the store, the operation and the refusal when the credentials are wrong', async () => {
    // s3rver checks the access key id (it does not verify V4 signatures).
    const denied = (await openRemoteBlobStore(`s3://${server.bucket}/${prefix}`, { ...server.env, AWS_ACCESS_KEY_ID: 'NOT-S3RVER' })) as S3BlobStore;
    try {
      const destination = scratchPath('denied');
      await expect(denied.download(UNKNOWN_SHA256, destination)).rejects.toThrow(
        new RegExp(
          `^s3://${server.bucket}/${prefix}: GetObject of .* failed \\(HTTP 403 InvalidAccessKeyId\\): The AWS Access Key Id you provided does not exist in our records\\. Check the credentials`,
        ),
      );
      expect(await exists(destination)).toBe(false);
    } finally {
      denied.client.destroy();
    }
  });

  it('an object bigger than the ref says (issue 18.7): refused before a byte is written, nothing kept', async () => {
    const layer = await randomFile(MiB);
    await store.upload(layer.sha256, layer.file);
    await server.client.send(new PutObjectCommand({ Bucket: server.bucket, Key: `${prefix}/sha256/${layer.sha256}`, Body: randomBytes(3 * MiB) }));
    const destination = scratchPath('oversized-s3.qcow2');
    const failure = store.download(layer.sha256, destination, { expectedBytes: MiB });
    await expect(failure).rejects.toBeInstanceOf(BlobIntegrityError);
    await expect(failure).rejects.toThrow(
      `Blob ${layer.sha256} in s3://${server.bucket}/${prefix} is larger than its ref says (${MiB} bytes): the store announces ${3 * MiB} bytes. The download was stopped`,
    );
    expect(await exists(destination)).toBe(false);
  });

  describe('through https_proxy / http_proxy (issue 18.8)', () => {
    let proxy: TestProxy;
    let hiddenEndpoint: string;
    beforeAll(async () => {
      // The store's endpoint is a port nothing listens on; only the proxy forwards it to s3rver.
      const hidden = `127.0.0.1:${await deadPort()}`;
      hiddenEndpoint = `http://${hidden}`;
      proxy = await startTestProxy({ [hidden]: new URL(server.env.AWS_ENDPOINT_URL_S3).host });
    });
    afterAll(() => proxy?.close());

    it.each(['http_proxy', 'HTTP_PROXY'])('uploads, finds and downloads a blob through the proxy named by %s (the endpoint is http://)', async (variable) => {
      proxy.requests.length = 0;
      const proxied = (await openRemoteBlobStore(`s3://${server.bucket}/${prefix}`, {
        ...server.env,
        AWS_ENDPOINT_URL_S3: hiddenEndpoint,
        AWS_MAX_ATTEMPTS: '1',
        [variable]: proxy.url,
        // Both spellings of the variable are read; this entry names another host.
        no_proxy: 'localhost,.internal.example',
      })) as S3BlobStore;
      try {
        const layer = await randomFile(MiB + 512);
        expect(await proxied.upload(layer.sha256, layer.file)).toBe('uploaded');
        expect(await proxied.has(layer.sha256)).toBe(true);
        const destination = scratchPath('via-proxy.qcow2');
        await proxied.download(layer.sha256, destination, { expectedBytes: layer.bytes });
        expect(await sha256Of(destination)).toBe(layer.sha256);
        expect(proxy.requests.length).toBeGreaterThan(0);
        expect(new Set(proxy.requests)).toEqual(new Set([`CONNECT ${new URL(hiddenEndpoint).host}`]));
      } finally {
        proxied.client.destroy();
      }
    });

    it('connects directly to a host no_proxy names (here: refused, as nothing listens there)', async () => {
      proxy.requests.length = 0;
      const direct = (await openRemoteBlobStore(`s3://${server.bucket}`, {
        ...server.env,
        AWS_ENDPOINT_URL_S3: hiddenEndpoint,
        AWS_MAX_ATTEMPTS: '1',
        https_proxy: proxy.url,
        http_proxy: proxy.url,
        no_proxy: '127.0.0.1',
      })) as S3BlobStore;
      try {
        await expect(direct.has(UNKNOWN_SHA256)).rejects.toThrow(/ECONNREFUSED/);
        expect(proxy.requests).toEqual([]);
      } finally {
        direct.client.destroy();
      }
    });
  });

  it('names the store, the operation and the endpoint when nothing listens there', async () => {
    const unreachable = (await openRemoteBlobStore(`s3://${server.bucket}`, {
      ...server.env,
      AWS_ENDPOINT_URL_S3: 'http://127.0.0.1:9',
      AWS_MAX_ATTEMPTS: '1',
    })) as S3BlobStore;
    try {
      await expect(unreachable.has(UNKNOWN_SHA256)).rejects.toThrow(
        new RegExp(`^s3://${server.bucket}: HeadObject of .* failed \\(ECONNREFUSED\\): .*ECONNREFUSED.*Is http://127.0.0.1:9 reachable\\?`),
      );
    } finally {
      unreachable.client.destroy();
    }
  });
});
