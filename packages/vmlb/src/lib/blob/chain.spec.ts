import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { LocalBlobCache } from './local-cache';
import { materialiseChain } from './chain';
import { openRemoteBlobStore } from './store';
import { downloadIntoNewFile } from './transfer';
import { type LayerRef, readRef } from './layer-ref';
import { refPathFor } from '../image/dist-layout';

// Refs and blobs from outside (a cache, a shared store) that must not make
// vmlb loop, walk out of dist/, or read without end (issue 18.7).

const MiB = 1024 * 1024;
let workDir: string;
let dist: string;
let storeDir: string;
let cache: LocalBlobCache;
const logs: string[] = [];
const log = (line: string) => logs.push(line);

beforeEach(() => {
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmlb-blob-chain-'));
  dist = path.join(workDir, 'dist', 'images', 'tiny');
  storeDir = path.join(workDir, 'store');
  fs.mkdirSync(dist, { recursive: true });
  fs.mkdirSync(path.join(storeDir, 'sha256'), { recursive: true });
  cache = new LocalBlobCache(path.join(workDir, 'cache'));
  logs.length = 0;
});
afterEach(() => fs.rmSync(workDir, { recursive: true, force: true }));

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

function writeRefFile(layer: string, ref: Partial<LayerRef>): string {
  const qcow2 = path.join(dist, `${layer}.qcow2`);
  const full = { sha256: 'a'.repeat(64), size: 1, digest: 'b'.repeat(64), builtBy: `tiny-${layer}:build`, ...ref };
  fs.writeFileSync(refPathFor(qcow2), JSON.stringify(full));
  return qcow2;
}

const stores = async () => ({ local: cache, remote: await openRemoteBlobStore(`file://${storeDir}`) });

describe('refs from a cache', () => {
  it('a ref whose parent names itself: refused as malformed, no endless walk', async () => {
    const top = writeRefFile('10_hello', { parent: '10_hello.qcow2' });
    await expect(readRef(refPathFor(top))).rejects.toThrow(`Layer ref ${refPathFor(top)} has a malformed parent. Delete it and rebuild the layer.`);
    await expect(materialiseChain(top, await stores(), { log })).rejects.toThrow(`Layer ref ${refPathFor(top)} has a malformed parent`);
  });

  it.each([
    '..',
    '../../../etc/passwd',
    '.',
    '',
    '/etc/shadow',
    'sub/00_disk.qcow2',
    'base.qcow2\0',
    '../../prod/20_packages.qcow2',
    '../../20_packages.qcow2',
    '../../../tiny/x.qcow2',
    '../.hidden/20_packages.qcow2',
    '../prod/sub/20_packages.qcow2',
  ])('a ref whose parent is %j: refused, nothing outside dist/ is read', async (parent) => {
    const top = writeRefFile('10_hello', { parent });
    await expect(materialiseChain(top, await stores(), { log })).rejects.toThrow(`Layer ref ${refPathFor(top)} has a malformed parent`);
  });

  it('a ref on another image’s layer (../prod/20_packages.qcow2, a derived image): followed into that sibling folder', async () => {
    const otherDist = path.join(dist, '..', 'prod');
    fs.mkdirSync(otherDist);
    const bytes = Buffer.from('layer of prod');
    fs.writeFileSync(path.join(storeDir, 'sha256', sha256(bytes)), bytes);
    fs.writeFileSync(
      refPathFor(path.join(otherDist, '20_packages.qcow2')),
      JSON.stringify({ sha256: sha256(bytes), size: bytes.length, digest: 'c'.repeat(64), builtBy: 'prod-20_packages:build' }),
    );
    const top = writeRefFile('10_worker', { sha256: sha256(bytes), size: bytes.length, parent: '../prod/20_packages.qcow2' });
    const counts = await materialiseChain(top, await stores(), { log });
    expect(counts).toEqual(expect.objectContaining({ downloaded: 1, linked: 1 }));
    expect(fs.readFileSync(path.join(otherDist, '20_packages.qcow2'), 'utf8')).toBe('layer of prod');
  });

  it('a chain whose top ref is not in dist/ (a checkout that has built nothing): names the build that brings the refs', async () => {
    const top = path.join(dist, '20_motd.qcow2');
    await expect(materialiseChain(top, await stores(), { log })).rejects.toThrow(
      `${refPathFor(top)} does not exist: build the image first: nx build image-tiny (where a remote cache holds its layers, that only restores their refs).`,
    );
  });

  it('refs that form a longer cycle (a → b → a): the walk stops and names the cycle', async () => {
    writeRefFile('10_a', { parent: '20_b.qcow2' });
    const top = writeRefFile('20_b', { parent: '10_a.qcow2' });
    await expect(materialiseChain(top, await stores(), { log })).rejects.toThrow(
      `The layer refs above 20_b.qcow2 in ${dist} form a cycle (20_b.qcow2 → 10_a.qcow2 → 20_b.qcow2): they were not written by vmlb. Delete the .ref files there and build the image again.`,
    );
  });
});

describe('blobs from a file:// store that are not what the ref says', () => {
  it('a blob bigger than its ref says: the download stops past the ref size and keeps nothing', async () => {
    const layer = Buffer.alloc(MiB, 'layer');
    const oversized = Buffer.concat([layer, Buffer.alloc(3 * MiB, 'more')]);
    fs.writeFileSync(path.join(storeDir, 'sha256', sha256(layer)), oversized);
    const top = writeRefFile('00_disk', { sha256: sha256(layer), size: layer.length });
    await expect(materialiseChain(top, await stores(), { log })).rejects.toThrow(
      new RegExp(
        `^Blob ${sha256(layer)} in file://${storeDir} is larger than its ref says \\(1048576 bytes\\): the store announces 4194304 bytes\\. The download was stopped`,
      ),
    );
    expect(fs.existsSync(top)).toBe(false);
    expect(fs.readdirSync(cache.root, { recursive: true }).filter((name) => !fs.statSync(path.join(cache.root, String(name))).isDirectory())).toEqual([]);
  });

  it('a FIFO in the store: refused without reading it (it would stream forever)', async () => {
    const blob = 'c'.repeat(64);
    execFileSync('mkfifo', [path.join(storeDir, 'sha256', blob)]);
    const top = writeRefFile('00_disk', { sha256: blob, size: MiB });
    await expect(materialiseChain(top, await stores(), { log })).rejects.toThrow(
      `file://${storeDir}: blob ${blob} (${path.join(storeDir, 'sha256', blob)}) is a FIFO (named pipe), not a regular file; a file store holds only regular files. ` +
        `Delete ${path.join(storeDir, 'sha256', blob)} from the store so that the next upload of this layer replaces it.`,
    );
    expect(fs.existsSync(top)).toBe(false);
  });

  it('a link to /dev/zero in the store: refused as a character device', async () => {
    const blob = 'd'.repeat(64);
    fs.symlinkSync('/dev/zero', path.join(storeDir, 'sha256', blob));
    const top = writeRefFile('00_disk', { sha256: blob, size: MiB });
    await expect(materialiseChain(top, await stores(), { log })).rejects.toThrow(`is a character device, not a regular file`);
    const store = await openRemoteBlobStore(`file://${storeDir}`);
    await expect(store.download(blob, path.join(workDir, 'zero'), { expectedBytes: MiB })).rejects.toThrow('is a character device, not a regular file');
    expect(fs.existsSync(path.join(workDir, 'zero'))).toBe(false);
  });
});

describe('a store that streams more than it announced', () => {
  it('the download stops as soon as more bytes than the ref says have arrived, and the partial file is removed', async () => {
    const destination = path.join(workDir, 'partial');
    let produced = 0;
    const endless = new Readable({
      read() {
        produced += MiB;
        this.push(Buffer.alloc(MiB, 1));
      },
    });
    const request = { sha256: 'e'.repeat(64), storeUrl: 's3://bucket/x', blobLocation: 's3://bucket/x/sha256/eee', destination };
    await expect(downloadIntoNewFile(request, async () => ({ stream: endless, totalBytes: 0 }), { expectedBytes: 2 * MiB })).rejects.toThrow(
      `Blob ${'e'.repeat(64)} in s3://bucket/x is larger than its ref says (2097152 bytes): more than 2097152 bytes arrived. The download was stopped and ${destination} removed.`,
    );
    expect(fs.existsSync(destination)).toBe(false);
    // Stopped at the cap (plus what the stream buffers), not at the end of the disk.
    expect(produced).toBeLessThan(64 * MiB);
  });
});
