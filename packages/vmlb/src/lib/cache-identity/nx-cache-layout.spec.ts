import { isTaskHash, noshareEntryDir, noshareStoreDir, nxCacheEntryDir } from './nx-cache-layout';

describe('nx-cache-layout', () => {
  it('places Nx entries and noshare entries under the cache directory by task hash', () => {
    expect(nxCacheEntryDir('/cache', '15965196875978723457')).toBe('/cache/15965196875978723457');
    expect(noshareStoreDir('/cache')).toBe('/cache/vmlb-noshare');
    expect(noshareEntryDir('/cache', 'a_b-1')).toBe('/cache/vmlb-noshare/a_b-1');
  });

  it('takes only what can be a task hash, never a path', () => {
    for (const hash of ['15965196875978723457', 'AZaz09_-', '1'.repeat(128)]) expect(isTaskHash(hash)).toBe(true);
    for (const hash of ['', '..', '.', 'a/b', 'a.b', '1'.repeat(129)]) expect(isTaskHash(hash)).toBe(false);
    expect(() => nxCacheEntryDir('/cache', '..')).toThrow("'..' is not a task hash (letters, digits, - and _ only).");
    expect(() => noshareEntryDir('/cache', '../x')).toThrow("'../x' is not a task hash");
  });
});
