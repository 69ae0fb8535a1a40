import { noshareStoreKey } from './executor';

const hints = (overrides: { noshare?: boolean; nocache?: boolean }) => ({
  hints: { nocache: false, noshare: false, bindMounts: [], partitionMounts: [], ...overrides },
});

describe('noshareStoreKey', () => {
  it('is the Nx task hash for a noshare layer', () => {
    expect(noshareStoreKey(hints({ noshare: true }), { NX_TASK_HASH: '13750905848522521693' })).toBe('13750905848522521693');
  });

  it('is absent for a layer Nx caches itself (no hint)', () => {
    expect(noshareStoreKey(hints({}), { NX_TASK_HASH: '1' })).toBeUndefined();
  });

  it('is absent when the layer is also nocache: stored nowhere', () => {
    expect(noshareStoreKey(hints({ noshare: true, nocache: true }), { NX_TASK_HASH: '1' })).toBeUndefined();
  });

  it('is absent under --skip-nx-cache, and when Nx passed no hash', () => {
    expect(noshareStoreKey(hints({ noshare: true }), { NX_TASK_HASH: '1', NX_SKIP_NX_CACHE: 'true' })).toBeUndefined();
    expect(noshareStoreKey(hints({ noshare: true }), { NX_TASK_HASH: '' })).toBeUndefined();
    expect(noshareStoreKey(hints({ noshare: true }), {})).toBeUndefined();
  });
});
