import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { RootSnapshot } from './root-snapshot';
import { gunzipSync } from 'node:zlib';
import { encodeSnapshotBody, readSnapshotFile, writeSnapshotFile } from './snapshot-file';

describe('snapshot files', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vmlb-snapshot-file-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const digest = 'd'.repeat(64);
  const snapshot: RootSnapshot = {
    files: new Map([
      ['/', { size: 4096, mtimeMs: 1, ino: 2, mode: 0o40755, uid: 0, gid: 0 }],
      ['/etc/motd.link', { size: 4, mtimeMs: 1.5, ino: 12, mode: 0o120777, uid: 0, gid: 0, link: 'motd' }],
      ['/caf\u00e9', { size: 3, mtimeMs: 2, ino: 13, mode: 0o100644, uid: 1000, gid: 100 }],
    ]),
    packageManager: 'dpkg',
    packages: new Map([['libc6', '2.36-9']]),
    packageArchitectures: new Map([['libc6', 'amd64']]),
  };

  it('reads back what it wrote, packages included', async () => {
    const file = path.join(dir, '10_a.snapshot.json.gz');
    await writeSnapshotFile(file, snapshot, digest);
    expect(await readSnapshotFile(file, digest)).toEqual(snapshot);
  });

  it('reads back a body encoded before the digest was known, as one JSON document', async () => {
    const file = path.join(dir, '15_a.snapshot.json.gz');
    await writeSnapshotFile(file, await encodeSnapshotBody(snapshot), digest);
    expect(await readSnapshotFile(file, digest)).toEqual(snapshot);
    expect(JSON.parse(gunzipSync(readFileSync(file)).toString('utf8'))).toMatchObject({ version: 1, digest, packages: [['libc6', '2.36-9', 'amd64']] });
  });

  it('is ignored when it belongs to another build of the layer, or is damaged', async () => {
    const file = path.join(dir, '20_b.snapshot.json.gz');
    await writeSnapshotFile(file, snapshot, digest);
    await expect(readSnapshotFile(file, 'e'.repeat(64))).resolves.toBeUndefined();
    writeFileSync(file, 'not gzip');
    await expect(readSnapshotFile(file, digest)).resolves.toBeUndefined();
    await expect(readSnapshotFile(path.join(dir, 'missing.gz'), digest)).resolves.toBeUndefined();
  });
});
