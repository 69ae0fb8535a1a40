import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import * as path from 'node:path';
import { type LayerStatus, type StatusLayer, type StatusSources, layerStatuses } from './layer-status';

const digest = (seed: string) => createHash('sha256').update(seed).digest('hex');

describe('layerStatuses', () => {
  let root: string;
  let cacheDir: string;
  const imageDir = () => path.join(root, 'dist/images/demo');
  const layer = (name: string, cacheability: StatusLayer['cacheability'] = 'cached'): StatusLayer => ({
    name,
    kind: name === 'base' ? 'base' : 'build-layer',
    hints: cacheability === 'cached' ? [] : [cacheability],
    cacheability,
    taskId: `demo-${name}:build`,
    qcow2: path.join(imageDir(), `${name}.qcow2`),
  });
  /** Stands in for Nx's hasher: a hash of the task and of the digests it is given, as Nx's covers them. */
  const hashOf = (taskId: string, digests: Record<string, string>) =>
    String(
      BigInt(
        `0x${createHash('sha256')
          .update(JSON.stringify([taskId, Object.entries(digests).sort()]))
          .digest('hex')
          .slice(0, 15)}`,
      ),
    );
  const sources = (extra: Partial<StatusSources> = {}): StatusSources => ({
    workspaceRoot: root,
    hash: async (taskId, digests) => hashOf(taskId, digests),
    nxCacheDir: cacheDir,
    distDir: path.join(root, 'dist/images'),
    blobs: false,
    ...extra,
  });
  const manifest = (taskHash: string, host = hostname(), workspace = root) =>
    JSON.stringify({
      kind: 'build-layer',
      version: 1,
      files: { added: [], modified: [], removed: [], counts: { added: 3, modified: 1, removed: 0 }, truncated: false },
      build: { taskHash, host, workspace, finishedAt: '2026-11-23T10:00:00.000Z', seconds: 4.2, fileSize: 1024, virtualSize: 4096 },
    });
  /** Puts a layer's files in dist/ as a build under `taskHash` leaves them. */
  const putInDist = (name: string, taskHash: string, options: { host?: string; workspace?: string } = {}) => {
    mkdirSync(imageDir(), { recursive: true });
    writeFileSync(path.join(imageDir(), `${name}.qcow2`), 'qcow2');
    writeFileSync(path.join(imageDir(), `${name}.digest`), `${digest(name)}\n`);
    writeFileSync(path.join(imageDir(), `${name}.manifest.json`), manifest(taskHash, options.host, options.workspace));
  };
  /** Puts a layer's Nx cache entry in place, as Nx stores it: outputs under `<cache>/<hash>/`. */
  const putInCache = (name: string, taskHash: string) => {
    const dir = path.join(cacheDir, taskHash, 'dist/images/demo');
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, `${name}.digest`), `${digest(name)}\n`);
    writeFileSync(path.join(dir, `${name}.manifest.json`), manifest(taskHash));
  };
  /** The hash a layer gets when every layer below it has the digest `digest(name)`. */
  const expectedHash = (chain: string[], index: number) =>
    hashOf(`demo-${chain[index]}:build`, Object.fromEntries(chain.slice(0, index).map((name) => [`demo/${name}.digest`, `${digest(name)}\n`])));
  const states = (rows: LayerStatus[]) => rows.map((row) => [row.name, row.state, row.note]);

  beforeEach(() => {
    root = mkdtempSync(path.join(tmpdir(), 'vmlb-status-'));
    cacheDir = path.join(root, '.nx/cache');
  });

  afterEach(() => rmSync(root, { recursive: true, force: true }));

  const chain = ['base', '10_a', '20_b'];

  it('reports a fresh workspace as not built, with hashes unknown above the first layer', async () => {
    const rows = await layerStatuses(
      chain.map((name) => layer(name)),
      sources(),
    );
    expect(states(rows)).toEqual([
      ['base', 'not built', undefined],
      ['10_a', 'not built', 'built after base'],
      ['20_b', 'not built', 'built after base'],
    ]);
    expect(rows.map((row) => row.hash)).toEqual([expectedHash(chain, 0), null, null]);
  });

  it('tells layers built in this workspace from layers restored from a cache', async () => {
    putInDist('base', expectedHash(chain, 0));
    putInDist('10_a', expectedHash(chain, 1), { host: 'ci-runner-7' });
    putInDist('20_b', expectedHash(chain, 2), { workspace: '/elsewhere' });
    const rows = await layerStatuses(
      chain.map((name) => layer(name)),
      sources(),
    );
    expect(states(rows)).toEqual([
      ['base', 'built here', undefined],
      ['10_a', 'restored here', undefined],
      ['20_b', 'restored here', undefined],
    ]);
    expect(rows[1]).toMatchObject({
      digest: digest('10_a'),
      fileSize: 1024,
      virtualSize: 4096,
      lastBuild: { seconds: 4.2, host: 'ci-runner-7' },
      changes: '+3 ~1 files',
    });
  });

  it('treats files in dist/ built under another hash as stale, and the layers above as rebuilt after them', async () => {
    putInDist('base', expectedHash(chain, 0));
    putInDist('10_a', 'an-older-hash');
    putInDist('20_b', expectedHash(chain, 2));
    const rows = await layerStatuses(
      chain.map((name) => layer(name)),
      sources(),
    );
    expect(states(rows)).toEqual([
      ['base', 'built here', undefined],
      ['10_a', 'not built', undefined],
      ['20_b', 'not built', 'built after 10_a'],
    ]);
  });

  it('follows the chain through the local cache, hashing each layer with the digest its parent will be restored with', async () => {
    chain.forEach((name, index) => putInCache(name, expectedHash(chain, index)));
    const rows = await layerStatuses(
      chain.map((name) => layer(name)),
      sources(),
    );
    expect(states(rows)).toEqual(chain.map((name) => [name, 'in local cache', undefined]));
    expect(rows.map((row) => row.digest)).toEqual(chain.map(digest));
    expect(rows[2].lastBuild).toEqual({ seconds: 4.2, finishedAt: '2026-11-23T10:00:00.000Z', host: hostname() });
  });

  it("looks noshare layers up in vmlb's store, not in Nx's cache", async () => {
    const layers = [layer('base'), layer('10_a', 'noshare')];
    putInCache('base', expectedHash(chain, 0));
    const entry = path.join(cacheDir, 'vmlb-noshare', expectedHash(chain, 1));
    mkdirSync(entry, { recursive: true });
    writeFileSync(path.join(entry, 'layer.digest'), `${digest('10_a')}\n`);
    const rows = await layerStatuses(layers, sources());
    expect(states(rows)).toEqual([
      ['base', 'in local cache', undefined],
      ['10_a', 'in local cache', "in vmlb's noshare store"],
    ]);
  });

  it('asks the remote cache only for cacheable layers no local cache has, and stops hashing above a remote-only layer', async () => {
    const asked: string[] = [];
    const rows = await layerStatuses(
      chain.map((name) => layer(name)),
      sources({
        remote: async (hash) => {
          asked.push(hash);
          return 'hit';
        },
      }),
    );
    expect(asked).toEqual([expectedHash(chain, 0)]);
    expect(states(rows)).toEqual([
      ['base', 'in remote cache', undefined],
      ['10_a', 'unknown', 'its hash needs the digest of base, which only the remote cache has'],
      ['20_b', 'unknown', 'its hash needs the digest of base, which only the remote cache has'],
    ]);
  });

  it('says why the remote cache could not be asked', async () => {
    const rows = await layerStatuses([layer('base')], sources({ remote: async () => ({ unknown: 'connection refused' }) }));
    expect(states(rows)).toEqual([['base', 'not built', 'remote cache not checked: connection refused']]);
  });

  it('marks a nocache layer and the layers above it as rebuilt on every run', async () => {
    putInDist('base', expectedHash(chain, 0));
    putInDist('10_a', expectedHash(chain, 1));
    putInDist('20_b', expectedHash(chain, 2));
    const rows = await layerStatuses([layer('base'), layer('10_a', 'nocache'), layer('20_b')], sources());
    expect(states(rows)).toEqual([
      ['base', 'built here', undefined],
      ['10_a', 'built here', 'nocache: rebuilt on every run'],
      ['20_b', 'built here', 'rebuilt on every run, after nocache 10_a'],
    ]);
  });

  it('in blob mode looks for the ref in dist/, not the qcow2', async () => {
    putInDist('base', expectedHash(chain, 0));
    rmSync(path.join(imageDir(), 'base.qcow2'));
    expect(states(await layerStatuses([layer('base')], sources({ blobs: true })))).toEqual([['base', 'not built', undefined]]);
    writeFileSync(path.join(imageDir(), 'base.ref'), '{}');
    expect(states(await layerStatuses([layer('base')], sources({ blobs: true })))).toEqual([['base', 'built here', undefined]]);
  });
});
