import { TempWorkspace } from '../../testing/temp-workspace';
import { chainTop } from './image-chain';
import { discoverImage } from './layer-discovery';
import { chainPointName, selectChainPoint } from './layer-select';

describe('selectChainPoint', () => {
  const workspace = new TempWorkspace();
  workspace.write('images/demo/image.json', JSON.stringify({ base: { empty: '1G' } }));
  workspace.script('images/demo/00_disk/modify-disk');
  workspace.script('images/demo/10_hello/build-layer');
  workspace.script('images/demo/105_late/build-layer');
  afterAll(() => workspace.remove());
  const image = discoverImage(workspace.root, 'images/demo');
  const named = (given: string) => chainPointName(selectChainPoint(image, given, '--layer'));

  it('takes a layer folder, its number (leading zeros or not), or base', () => {
    expect(named('10_hello')).toBe('10_hello');
    expect(named('10')).toBe('10_hello');
    expect(named('0')).toBe('00_disk');
    expect(named('00')).toBe('00_disk');
    expect(named('105')).toBe('105_late');
    expect(named('base')).toBe('base');
  });

  it.each(['30_app', '30', '10_hell', 'hello', ''])('rejects %p, naming the option, the image and every layer', (given) => {
    expect(() => selectChainPoint(image, given, '--upTo')).toThrow(
      `--upTo '${given}' is not a layer of image demo (images/demo); give a layer folder or its number: base, 00_disk, 10_hello, 105_late.`,
    );
  });

  it("ends an image target's chain at the layer --upTo names", () => {
    const location = { imageName: 'demo', imageRoot: 'images/demo', distDir: 'dist/images' };
    expect(chainTop(location, workspace.root)).toBe('dist/images/demo/105_late.qcow2');
    expect(chainTop({ ...location, upTo: '10' }, workspace.root)).toBe('dist/images/demo/10_hello.qcow2');
    expect(chainTop({ ...location, upTo: 'base' }, workspace.root)).toBe('dist/images/demo/base.qcow2');
    expect(() => chainTop({ imageName: 'demo', chain: 'x.qcow2', upTo: '10' }, workspace.root)).toThrow('give --chain or --upTo, not both');
  });
});
