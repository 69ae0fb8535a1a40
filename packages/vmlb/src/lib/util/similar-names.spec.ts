import { similarNames } from './similar-names';

describe('similarNames', () => {
  it('offers the names that contain the wanted one or are contained in it, never the name itself', () => {
    expect(similarNames('greeterr', ['greeter', 'image-tiny', 'greeterr'])).toEqual(['greeter']);
    expect(similarNames('tiny', ['tiny-boot', 'prod', 'tiny'])).toEqual(['tiny-boot']);
  });

  it('offers at most the limit', () => {
    expect(similarNames('a', ['a1', 'a2', 'a3'], 2)).toEqual(['a1', 'a2']);
  });
});
