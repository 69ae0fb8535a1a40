import { chmodSync } from 'node:fs';
import { TempWorkspace } from '../../testing/temp-workspace';
import { ImageDefinitionError, discoverImage, looksLikeLayerFolder, parseLayerFolder, suggestLayerFolder } from './layer-discovery';

describe('layer folder names', () => {
  it.each([
    ['00_base', { number: 0, name: 'base' }],
    ['10_update', { number: 10, name: 'update' }],
    ['105_late.fix-2', { number: 105, name: 'late.fix-2' }],
  ])('parses %p', (folder, parsed) => {
    expect(parseLayerFolder(folder)).toEqual(parsed);
  });

  it.each(['1_foo', '10-foo', '10_', '10 foo', 'files', 'test-boot', '10_a b'])('does not take %p as a layer', (folder) => {
    expect(parseLayerFolder(folder)).toBeUndefined();
  });

  it('flags folders that start with a digit but are not layers, and suggests a name', () => {
    expect(looksLikeLayerFolder('1_foo')).toBe(true);
    expect(looksLikeLayerFolder('10-foo')).toBe(true);
    expect(looksLikeLayerFolder('files')).toBe(false);
    expect(looksLikeLayerFolder('10_foo')).toBe(false);
    expect(suggestLayerFolder('1_foo')).toBe('01_foo');
    expect(suggestLayerFolder('10-foo')).toBe('10_foo');
    expect(suggestLayerFolder('7 my layer')).toBe('07_my-layer');
  });
});

describe('discoverImage', () => {
  let workspace: TempWorkspace;
  beforeEach(() => {
    workspace = new TempWorkspace();
    workspace.write('images/demo/image.json', JSON.stringify({ base: { empty: '1G' }, rootPartition: 1 }));
  });
  afterEach(() => workspace.remove());

  it('lists layers in numeric order with their kind, script and hints, ignoring other folders', () => {
    workspace.script('images/demo/100_last/build-layer', '# nocache');
    workspace.script('images/demo/20_resize/modify-disk', '# disk-size 2G');
    workspace.script('images/demo/05_first/build-layer', '# chroot-bind-mount files /opt/files');
    workspace.write('images/demo/05_first/files/a.txt', 'a');
    workspace.write('images/demo/test-boot/user-data', '#cloud-config');
    workspace.mkdir('images/demo/files');

    const image = discoverImage(workspace.root, 'images/demo');

    expect(image).toMatchObject({ name: 'demo', root: 'images/demo', configFile: 'images/demo/image.json', warnings: [] });
    expect(image.config.rootPartition).toBe(1);
    expect(image.layers.map(({ folder, number, dir, kind, script }) => ({ folder, number, dir, kind, script }))).toEqual([
      { folder: '05_first', number: 5, dir: 'images/demo/05_first', kind: 'build-layer', script: 'images/demo/05_first/build-layer' },
      { folder: '20_resize', number: 20, dir: 'images/demo/20_resize', kind: 'modify-disk', script: 'images/demo/20_resize/modify-disk' },
      { folder: '100_last', number: 100, dir: 'images/demo/100_last', kind: 'build-layer', script: 'images/demo/100_last/build-layer' },
    ]);
    expect(image.layers[0].hints.bindMounts).toEqual([{ source: 'files', target: '/opt/files' }]);
    expect(image.layers[1].hints.diskSize).toBe(2 * 1024 ** 3);
    expect(image.layers[2].hints.nocache).toBe(true);
  });

  it('warns about folders that look like layers but are not', () => {
    workspace.script('images/demo/1_foo/build-layer');
    workspace.script('images/demo/10-bar/build-layer');
    const image = discoverImage(workspace.root, 'images/demo');
    expect(image.layers).toEqual([]);
    expect(image.warnings).toEqual([
      expect.stringMatching(/^images\/demo\/10-bar looks like a layer folder but is not one.*Rename it, e\.g\. to 10_bar\.$/),
      expect.stringMatching(/^images\/demo\/1_foo looks like a layer folder.*Rename it, e\.g\. to 01_foo\.$/),
    ]);
  });

  const problemOf = (run: () => unknown): string => {
    try {
      run();
    } catch (error) {
      expect(error).toBeInstanceOf(ImageDefinitionError);
      return (error as Error).message;
    }
    throw new Error('expected an ImageDefinitionError');
  };

  it('reports an image folder without image.json, with the fix', () => {
    workspace.script('images/nojson/00_base/build-layer');
    expect(problemOf(() => discoverImage(workspace.root, 'images/nojson'))).toBe(
      'images/nojson has layer folders but no image.json. Create images/nojson/image.json, e.g. {"base": {"empty": "4G"}}, or run: nx g vmlb:image nojson',
    );
  });

  it('reports an invalid image.json', () => {
    workspace.write('images/demo/image.json', '{"base": {}}');
    expect(problemOf(() => discoverImage(workspace.root, 'images/demo'))).toMatch(/^images\/demo\/image\.json does not match the image schema/);
  });

  it('reports a layer with both scripts, a layer with neither, and a script that is not executable, all at once', () => {
    workspace.script('images/demo/00_both/build-layer');
    workspace.script('images/demo/00_both/modify-disk');
    workspace.mkdir('images/demo/10_empty');
    workspace.write('images/demo/20_plain/build-layer', '#!/bin/sh\n');
    expect(problemOf(() => discoverImage(workspace.root, 'images/demo'))).toBe(
      [
        'images/demo has 3 problems:',
        '  - images/demo/00_both holds both build-layer and modify-disk; a layer runs exactly one script. Move one of them into a layer of its own.',
        '  - images/demo/10_empty is a layer folder but holds neither build-layer nor modify-disk. Add one of them (nx g vmlb:layer), or rename the folder so it does not start with a number.',
        '  - images/demo/20_plain/build-layer is not executable. Run: chmod +x images/demo/20_plain/build-layer',
      ].join('\n'),
    );
  });

  it('reports a script without a #! line, showing its first line', () => {
    workspace.write('images/demo/00_a/build-layer', 'apt-get update\n');
    chmodSync(`${workspace.root}/images/demo/00_a/build-layer`, 0o755);
    expect(problemOf(() => discoverImage(workspace.root, 'images/demo'))).toBe(
      'images/demo/00_a/build-layer has no #! line, so it cannot be run. Make its first line name its interpreter, e.g. #!/bin/sh (found "apt-get update").',
    );
  });

  it('reports two layers with the same number', () => {
    workspace.script('images/demo/10_a/build-layer');
    workspace.script('images/demo/010_b/build-layer');
    expect(problemOf(() => discoverImage(workspace.root, 'images/demo'))).toBe(
      'images/demo: layers 010_b and 10_a share the number 10, so their order is ambiguous. Renumber one of them.',
    );
  });

  it('reports a bad hint with the script path and line', () => {
    workspace.script('images/demo/00_a/build-layer', '# chroot-mount boot /boot');
    expect(problemOf(() => discoverImage(workspace.root, 'images/demo'))).toMatch(/^images\/demo\/00_a\/build-layer:3: 'boot' is not a partition number/);
  });

  it('rejects an image folder name that cannot be part of a project name', () => {
    workspace.write('images/my image/image.json', '{"base": {"empty": "1G"}}');
    expect(problemOf(() => discoverImage(workspace.root, 'images/my image'))).toMatch(/'my image' cannot name an image/);
  });
});
