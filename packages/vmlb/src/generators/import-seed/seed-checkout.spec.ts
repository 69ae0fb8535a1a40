import { vmlbLayerNames } from './seed-checkout';

describe('vmlbLayerNames', () => {
  it('keeps names vmlb takes, in the order the original ran them', () => {
    expect(vmlbLayerNames(['05_resize', '10_update', '20_another'])).toEqual([{ folder: '05_resize' }, { folder: '10_update' }, { folder: '20_another' }]);
  });

  it('gives a layer that shares a number, or sorts after a larger one by name, the next number, keeping its width', () => {
    expect(vmlbLayerNames(['010_a', '010_b', '100_c', '20_d']).map((name) => name.folder)).toEqual(['010_a', '011_b', '100_c', '101_d']);
    expect(vmlbLayerNames(['10_a', '10_b'])[1].why).toBe(
      'renamed from 10_b: the original ran its layers in the order of their names, and vmlb runs them by number, one layer per number: 11 keeps this layer after the one before it.',
    );
  });

  it("replaces what vmlb's names do not allow", () => {
    expect(vmlbLayerNames(['10_my layer+x', '20_', '30_ä'])).toEqual([
      { folder: '10_my-layer-x', why: "renamed from 10_my layer+x: vmlb's layer names hold only letters, digits, '.', '_' and '-'." },
      { folder: '20_layer', why: "renamed from 20_: vmlb's layer names hold only letters, digits, '.', '_' and '-'." },
      { folder: '30_layer', why: "renamed from 30_ä: vmlb's layer names hold only letters, digits, '.', '_' and '-'." },
    ]);
  });
});
