import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LocalBlobCache } from './local-cache';
import { isPlaced } from './chain';
import { readRef, writeRef } from './layer-ref';
import { refPathFor } from '../image/dist-layout';

let workDir: string;
let cache: LocalBlobCache;

beforeEach(() => {
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmlb-blob-cache-'));
  cache = new LocalBlobCache(path.join(workDir, 'cache'));
});
afterEach(() => fs.rmSync(workDir, { recursive: true, force: true }));

function file(name: string, content: string): { path: string; sha256: string } {
  const target = path.join(workDir, name);
  fs.writeFileSync(target, content);
  return { path: target, sha256: createHash('sha256').update(content).digest('hex') };
}

describe('LocalBlobCache', () => {
  it('adopts a file by moving it under its sha256, read-only', async () => {
    const layer = file('10_a.qcow2', 'layer bytes');
    const inode = fs.statSync(layer.path).ino;
    const stored = await cache.adopt(layer.sha256, layer.path);
    expect(stored).toBe(path.join(cache.root, 'sha256', layer.sha256));
    expect(fs.existsSync(layer.path)).toBe(false);
    expect(fs.statSync(stored).ino).toBe(inode);
    expect(fs.statSync(stored).mode & 0o777).toBe(0o444);
    await expect(cache.has(layer.sha256)).resolves.toBe(true);
  });

  it('keeps the existing copy when the same blob is adopted twice', async () => {
    const first = file('a', 'same');
    const second = file('b', 'same');
    await cache.adopt(first.sha256, first.path);
    const inode = fs.statSync(cache.pathOf(first.sha256)).ino;
    await cache.adopt(second.sha256, second.path);
    expect(fs.statSync(cache.pathOf(first.sha256)).ino).toBe(inode);
    expect(fs.existsSync(second.path)).toBe(false);
  });

  it('places a blob as a hard link, replacing what was at the destination', async () => {
    const layer = file('10_a.qcow2', 'layer bytes');
    await cache.adopt(layer.sha256, layer.path);
    const destination = path.join(workDir, 'dist.qcow2');
    fs.writeFileSync(destination, 'stale');
    await expect(cache.placeAt(layer.sha256, destination)).resolves.toBe('linked');
    expect(fs.readFileSync(destination, 'utf8')).toBe('layer bytes');
    expect(fs.statSync(destination).ino).toBe(fs.statSync(cache.pathOf(layer.sha256)).ino);
  });

  it('lists blobs with size and link count, and removes them', async () => {
    const layer = file('x', 'abc');
    await cache.adopt(layer.sha256, layer.path);
    await cache.placeAt(layer.sha256, path.join(workDir, 'linked'));
    expect(await cache.list()).toEqual([expect.objectContaining({ sha256: layer.sha256, size: 3, links: 2 })]);
    await cache.remove(layer.sha256);
    expect(await cache.list()).toEqual([]);
    expect(fs.readFileSync(path.join(workDir, 'linked'), 'utf8')).toBe('abc');
  });

  it('rejects a name that is not a sha256', () => {
    expect(() => cache.pathOf('../../etc/passwd')).toThrow("'../../etc/passwd' is not a sha256");
  });
});

describe('layer refs and placed markers', () => {
  it('round-trips a ref and names the file when it is malformed', async () => {
    const qcow2 = path.join(workDir, '10_a.qcow2');
    const ref = { sha256: 'a'.repeat(64), size: 5, digest: 'b'.repeat(64), parent: '00_base.qcow2', builtBy: 'img-10_a:build' };
    await writeRef(refPathFor(qcow2), ref);
    await expect(readRef(path.join(workDir, '10_a.ref'))).resolves.toEqual(ref);
    fs.writeFileSync(refPathFor(qcow2), JSON.stringify({ ...ref, parent: '../escape.qcow2' }));
    await expect(readRef(refPathFor(qcow2))).rejects.toThrow(`Layer ref ${refPathFor(qcow2)} has a malformed parent`);
  });

  it('does not take a file that was replaced after placing for the blob', async () => {
    expect(await isPlaced(path.join(workDir, 'nothing.qcow2'), 'a'.repeat(64))).toBe(false);
  });
});
