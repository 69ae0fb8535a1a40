import { type ImageSummary, derivedImageProblems } from './derived-images';

const image = (name: string, layers: string[], derivedFrom?: { image: string; layer: string }): ImageSummary => ({
  name,
  root: `images/${name}`,
  configFile: `images/${name}/image.json`,
  layers,
  ...(derivedFrom ? { derivedFrom } : {}),
});

describe('derivedImageProblems', () => {
  it('accepts a chain of images built on each other’s layers', () => {
    const images = [
      image('prod', ['00_base', '20_packages']),
      image('worker', ['10_svc'], { image: 'prod', layer: '20_packages' }),
      image('edge', ['10_x'], { image: 'worker', layer: '10_svc' }),
    ];
    expect(derivedImageProblems(images, [])).toEqual([]);
  });

  it('reports a circle once per image in it, not for an image that only builds on the circle', () => {
    const images = [
      image('a', ['10_a'], { image: 'b', layer: '10_b' }),
      image('b', ['10_b'], { image: 'c', layer: '10_c' }),
      image('c', ['10_c'], { image: 'a', layer: '10_a' }),
      image('d', ['10_d'], { image: 'a', layer: '10_a' }),
    ];
    const problems = derivedImageProblems(images, []);
    expect(problems.map(([file]) => file)).toEqual(['images/a/image.json', 'images/b/image.json', 'images/c/image.json']);
    expect(problems[0][1].message).toContain('image a is built on itself (a → b → c → a,');
  });

  it('says nothing of a missing base image while some image folder could not be read (it may be that one)', () => {
    const images = [image('worker', ['10_svc'], { image: 'prod', layer: '20_packages' })];
    expect(derivedImageProblems(images, ['images/prod'])).toEqual([]);
    expect(derivedImageProblems(images, [])[0][1].message).toBe(
      "images/worker/image.json: base.image 'prod' names no image of this workspace. Name one of: (no other image); or give the image a base disk of its own (base.url, base.path or base.empty).",
    );
  });
});
