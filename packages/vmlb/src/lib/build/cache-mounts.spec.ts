import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { TempWorkspace } from '../../testing/temp-workspace';
import { CacheMountStore, cacheMountsMaxSize, cacheMountsRoot, trimCacheMounts } from './cache-mounts';
import { FolderLock } from './dist-lock';

const MiB = 1024 * 1024;

describe('the cache mount store', () => {
  let temp: TempWorkspace;
  let store: CacheMountStore;
  const user = { image: 'prod', layer: '20_packages' };
  beforeEach(() => {
    temp = new TempWorkspace();
    store = new CacheMountStore(temp.path('nx-cache/vmlb-cache-mounts'));
  });
  afterEach(() => temp.remove());

  /** A cache as a script leaves it: `megabytes` of data, last used `daysAgo`. */
  async function cacheWith(id: string, megabytes: number, daysAgo: number): Promise<void> {
    const held = await store.acquire([{ id, target: `/var/cache/${id}` }], user, { log: () => undefined });
    writeFileSync(path.join(store.dir(id), 'data'), Buffer.alloc(megabytes * MiB, 1));
    held.release();
    const record = path.join(store.root, '.vmlb', `${id}.json`);
    const written = JSON.parse(readFileSync(record, 'utf8'));
    writeFileSync(record, JSON.stringify({ ...written, lastUsed: new Date(Date.now() - daysAgo * 86_400_000).toISOString() }));
  }

  it('lives in Nx’s cache directory unless VMLB_CACHE_MOUNTS_DIR says otherwise', () => {
    expect(cacheMountsRoot('/ws/.nx/cache', {})).toBe('/ws/.nx/cache/vmlb-cache-mounts');
    expect(cacheMountsRoot('/ws/.nx/cache', { VMLB_CACHE_MOUNTS_DIR: '/var/lib/ci-cache' })).toBe('/var/lib/ci-cache');
  });

  it('makes its folder for root only and each cache a folder of its own, recording who used it', async () => {
    const held = await store.acquire([{ id: 'apt', target: '/var/cache/apt/archives' }], user, { log: () => undefined });
    expect(held.mounts).toEqual([{ source: store.dir('apt'), target: '/var/cache/apt/archives' }]);
    expect(statSync(store.root).mode & 0o777).toBe(0o700);
    expect(statSync(store.dir('apt')).isDirectory()).toBe(true);
    expect(JSON.parse(readFileSync(path.join(store.root, '.vmlb/apt.json'), 'utf8'))).toMatchObject({ id: 'apt', image: 'prod', layer: '20_packages' });
    held.release();
  });

  it('lets one script at a time use a cache: the next build waits, saying for whom, and gc leaves it alone', async () => {
    const first = await store.acquire([{ id: 'apt', target: '/var/cache/apt/archives' }], user, { log: () => undefined });
    const said: string[] = [];
    const second = store.acquire([{ id: 'apt', target: '/var/cache/apt/archives' }], { image: 'web', layer: '10_apt' }, { log: (line) => said.push(line) });
    let secondHolds = false;
    void second.then(() => (secondHolds = true));
    // The lock is the kernel's: gc in this state finds the cache in use.
    await cacheWith('other', 1, 9);
    expect(store.remove('apt')).toBe(false);
    expect(secondHolds).toBe(false);
    first.release();
    const held = await second;
    expect(said).toEqual(["vmlb: waiting for cache mount apt, which another build's script is using (prod 20_packages)..."]);
    held.release();
    expect(store.remove('apt')).toBe(true);
    expect(existsSync(store.dir('apt'))).toBe(false);
  });

  it('trims whole caches, least recently used first, until the rest fit; a cache in use is kept', async () => {
    await cacheWith('oldest', 3, 30);
    await cacheWith('busy', 2, 20);
    await cacheWith('old', 2, 10);
    await cacheWith('recent', 2, 1);
    expect(store.list().map((entry) => entry.id)).toEqual(expect.arrayContaining(['oldest', 'old', 'busy', 'recent']));

    const dryRun = trimCacheMounts(store, 5 * MiB, { dryRun: true });
    expect(dryRun.removed.map((entry) => entry.id)).toEqual(['oldest', 'busy']);
    expect(store.list()).toHaveLength(4);

    const busy = FolderLock.tryAcquire(path.join(store.root, '.vmlb', 'busy.lock'));
    try {
      const report = trimCacheMounts(store, 4.5 * MiB);
      expect(report.removed.map((entry) => entry.id)).toEqual(['oldest', 'old']);
      expect(report.busy.map((entry) => entry.id)).toEqual(['busy']);
      expect(report.before).toBe(9 * MiB);
      expect(report.after).toBe(4 * MiB);
      expect(
        store
          .list()
          .map((entry) => entry.id)
          .sort(),
      ).toEqual(['busy', 'recent']);
    } finally {
      busy?.release();
    }
  });

  it('takes the cap from gc’s option, else VMLB_CACHE_MOUNTS_MAX_SIZE, else 10 GiB, naming a bad one', () => {
    expect(cacheMountsMaxSize(undefined, {})).toBe(10 * 1024 * MiB);
    expect(cacheMountsMaxSize(undefined, { VMLB_CACHE_MOUNTS_MAX_SIZE: '500M' })).toBe(500 * MiB);
    expect(cacheMountsMaxSize('2G', { VMLB_CACHE_MOUNTS_MAX_SIZE: '500M' })).toBe(2 * 1024 * MiB);
    expect(cacheMountsMaxSize('0', {})).toBe(0);
    expect(() => cacheMountsMaxSize('lots', {})).toThrow("--cacheMountsMaxSize 'lots' is not a size; use e.g. 10G, 500M or 0.");
    expect(() => cacheMountsMaxSize(undefined, { VMLB_CACHE_MOUNTS_MAX_SIZE: '-1' })).toThrow("VMLB_CACHE_MOUNTS_MAX_SIZE '-1' is not a size");
  });
});
